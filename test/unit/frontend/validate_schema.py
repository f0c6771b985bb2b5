"""Validates JSON files against a JSON Schema (draft 2020-12).

Usage: validate_schema.py SCHEMA FILE...
Prints "ok FILE" or "invalid FILE: REASON" for each file; exits 0 unless the
schema itself is malformed (1) or jsonschema is missing (3).
"""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("python3-jsonschema is not installed")
    sys.exit(3)


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sys.argv[2:]:
        with open(path) as f:
            instance = json.load(f)
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        if error is None:
            print("ok", path)
        else:
            where = "/" + "/".join(str(p) for p in error.absolute_path)
            print("invalid %s: %s: %s" % (path, where, error.message))


if __name__ == "__main__":
    main()
