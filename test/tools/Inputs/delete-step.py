"""Deletes the first step of KERNEL from the plan of an artifact and writes
it with a valid checksum: delete-step.py IN OUT KERNEL. For tests of the
plan loader against damaged artifacts that the container checks cannot
catch."""

import json
import struct
import sys


def crc64_xz(data):
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xC96C5795D7870F42 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def main(source, target, kernel):
    data = open(source, "rb").read()
    prefix = data[:12]
    (header_length,) = struct.unpack_from("<Q", data, 12)
    plan = json.loads(data[20:20 + header_length])
    rest = data[20 + header_length:-8]
    index = next(i for i, step in enumerate(plan["steps"])
                 if step["kernel"] == kernel)
    del plan["steps"][index]
    if index < plan["forward_steps"]:
        plan["forward_steps"] -= 1
    header = json.dumps(plan).encode()
    body = prefix + struct.pack("<Q", len(header)) + header + rest
    open(target, "wb").write(body + struct.pack("<Q", crc64_xz(body)))


if __name__ == "__main__":
    main(*sys.argv[1:])
