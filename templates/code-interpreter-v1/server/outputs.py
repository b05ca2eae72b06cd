"""Jupyter messages to the lines of E2B's /execute stream (spec/e2b-protocol.md 5.3).

Pure functions of a message, so that the mapping is tested without a kernel
(test_outputs.py). The client parses every line with JSON.parse, so a line must be
strict JSON: NaN and the infinities, which Python's json writes by default, become null.
"""

import datetime
import json
import math

# Jupyter MIME type -> the result field the SDKs read; anything else goes to `extra`.
MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    "e2b/data": "data",
    "e2b/chart": "chart",
}


def result(data, is_main_result):
    """A `result` line from an execute_result (main) or display_data bundle."""
    out = {"type": "result", "is_main_result": is_main_result}
    extra = {}
    for mime, value in data.items():
        field = MIME_FIELDS.get(mime)
        if field is None:
            extra[mime] = value
        else:
            out[field] = value
    text = out.get("text")
    # E2B strips one pair of surrounding quotes, so that `'abc'` reads as abc (SDK tests
    # compare execution.text with the bare string).
    if isinstance(text, str) and len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        out["text"] = text[1:-1]
    if extra:
        out["extra"] = extra
    return out


def timestamp(header):
    date = header.get("date")
    if isinstance(date, datetime.datetime):
        if date.tzinfo is None:
            date = date.replace(tzinfo=datetime.timezone.utc)
        return date.isoformat()
    if isinstance(date, str):
        return date
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def error(name, value, traceback):
    return {"type": "error", "name": name, "value": value, "traceback": traceback}


def from_iopub(msg):
    """The line for one iopub message of an execution, or None when it has none.

    Status messages are the caller's business (idle ends an execution)."""
    kind = msg["msg_type"]
    content = msg["content"]
    if kind == "stream":
        name = content.get("name")
        if name not in ("stdout", "stderr"):
            return None
        return {"type": name, "text": content.get("text", ""), "timestamp": timestamp(msg["header"])}
    if kind == "execute_result":
        return result(content.get("data", {}), True)
    if kind == "display_data":
        return result(content.get("data", {}), False)
    if kind == "execute_input":
        return {"type": "number_of_executions", "execution_count": content.get("execution_count")}
    if kind == "error":
        return error(
            content.get("ename", ""),
            content.get("evalue", ""),
            "\n".join(content.get("traceback", [])),
        )
    return None


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def encode(line):
    """One NDJSON line: strict JSON, no raw newline inside, ending with one."""
    try:
        text = json.dumps(line, allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(_finite(line), allow_nan=False, default=str)
    return text + "\n"
