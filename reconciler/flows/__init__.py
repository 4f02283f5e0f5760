"""The flows: qrm's use cases, and its library API. Each composes the core and the edges; plain
arguments in, plain values out (dataclasses, dicts, paths); errors as reconciler.core.errors.QrmError.
No printing, no exit codes, no click: the CLI (and next, the HTTP server) are thin faces over them.
"""
