#!/usr/bin/env python3
"""Checks one output file of bench/run.sh after its server stopped.

    check_output.py FILE KIND SAMPLE LO HI

KIND is "logger" (ml_api_logger's NDJSON: one record per line, as sent) or "nginx" (nginx's
access log with `escape=json '$request_body'`: each line is one request body escaped as the
content of a JSON string; it is unescaped first, and a batch body is split into its records).

Every record must be the sample (SAMPLE) with its own "sequence", an integer in [LO, HI) — the
range run.sh handed out to the runs against this server — and no sequence may appear twice (a
record written twice). Prints one line:

    LINES RECORDS INVALID DIFFERING UNTERMINATED FIRST_PROBLEM

(FIRST_PROBLEM is "-" when there is none; it may contain spaces and comes last).
"""

import json
import sys

KEY = b'"sequence":'


def main():
    path, kind, sample_path = sys.argv[1], sys.argv[2], sys.argv[3]
    lo, hi = int(sys.argv[4]), int(sys.argv[5])
    if kind not in ("logger", "nginx") or hi < lo:
        sys.exit("usage: check_output.py FILE logger|nginx SAMPLE LO HI")

    raw = open(sample_path, "rb").read().rstrip(b"\n")
    sample = json.loads(raw)
    # The sample as bytes around its sequence: a record written as sent is PREFIX DIGITS SUFFIX,
    # checked without parsing; anything else is parsed and compared as JSON.
    at = raw.index(KEY) + len(KEY)
    end = at
    while end < len(raw) and raw[end:end + 1].isdigit():
        end += 1
    prefix, suffix = raw[:at], raw[end:]
    fixed = len(prefix) + len(suffix)

    seen = bytearray(hi - lo)
    lines = records = invalid = differing = unterminated = 0
    first = None

    def note(msg):
        nonlocal first
        if first is None:
            first = "line %d: %s" % (lines, msg)

    with open(path, "rb") as f:
        for line in f:
            lines += 1
            if line.endswith(b"\n"):
                line = line[:-1]
            else:
                unterminated += 1
                note("no final newline")
            if kind == "nginx":
                try:
                    body = json.loads(b'"' + line + b'"').encode("utf-8")
                except ValueError as e:
                    invalid += 1
                    note("not a JSON string's content (%s)" % str(e)[:80])
                    continue
                parts = body.split(b"\n")
                if len(parts) > 1 and parts[-1] == b"":
                    parts.pop()
            else:
                parts = (line,)
            for rec in parts:
                records += 1
                seq = None
                if len(rec) > fixed and rec.startswith(prefix) and rec.endswith(suffix):
                    digits = rec[len(prefix):len(rec) - len(suffix)]
                    if digits.isdigit() and (digits[:1] != b"0" or len(digits) == 1):
                        seq = int(digits)
                if seq is None:
                    # Not byte for byte the sample: it may still be the same record, formatted
                    # differently.
                    try:
                        obj = json.loads(rec)
                    except ValueError as e:
                        invalid += 1
                        note("not JSON (%s)" % str(e)[:80])
                        continue
                    seq = obj.get("sequence") if isinstance(obj, dict) else None
                    if isinstance(obj, dict):
                        obj = dict(obj, sequence=sample["sequence"])
                    if obj != sample:
                        differing += 1
                        note("not the record sent: %s" % rec[:80].decode("utf-8", "replace"))
                        continue
                if type(seq) is not int or not lo <= seq < hi:
                    differing += 1
                    note("sequence %r was not sent to this server" % (seq,))
                    continue
                if seen[seq - lo]:
                    differing += 1
                    note("sequence %d written twice" % seq)
                    continue
                seen[seq - lo] = 1
    print(lines, records, invalid, differing, unterminated, first or "-")


if __name__ == "__main__":
    main()
