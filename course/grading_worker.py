"""The untrusted side of grading: the processes that run a learner's code.

:mod:`course.grading` is the trusted grader. It never runs a submission's code itself: every
exercise gets a fresh worker process, forked from a server that has already imported torch and
the course (``multiprocessing``'s forkserver, preloaded), so that starting one costs
milliseconds. The worker

- becomes the leader of its own process group (the grader kills the whole group), caps its
  address space (what the preload mapped plus ``--memory``), the size of the files it may
  write, and its core dumps, works in an empty temporary folder and sends its stdout and
  stderr to ``/dev/null``;
- runs the top-level ``import`` statements of the notebook's other cells, then the exercise
  cell, one statement at a time;
- answers calls: the grader sends the arguments (a pickle, grader to worker only), the worker
  runs the learner's function with the library's versions switched off
  (:func:`course.checks.library_disabled`) and sends back the result in a safe encoding.

The encoding (:func:`encode` / :func:`decode`) is a JSON header plus ``.npy`` blobs read with
``allow_pickle=False``: ``None``, bools, ints, floats, strings, lists, tuples, sets, dicts,
numpy arrays and scalars, tensors (dtype and shape kept) and dataclasses (as a
``SimpleNamespace`` of their fields). Anything else arrives as an empty object of a class with
the same name when that is a builtin's name, so a checker can say "returned a generator".
Nothing the worker sends can run code in the grader.

The same module holds the notebook run (``python course/grading_worker.py notebook ...``),
which executes a restored notebook in a kernel of this Python, under the memory cap and a
per-cell timeout, for feedback only.

Importing this module is cheap (standard library only): the kernel wrapper imports it too.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import os
import resource
import signal
import struct
import sys
import types
from collections.abc import Callable
from typing import Any

MAX_RESULT_BYTES = 64 * 2**20
"""A result larger than this is refused (the learner's function raises ``ResultTooLarge``)."""
MAX_MESSAGE_CHARS = 500
"""Exception messages are cut to this length."""
MAX_STRING_CHARS = 200
"""Strings in a result are cut to this length (checkers may quote them)."""
MAX_FILE_BYTES = 256 * 2**20
"""The largest file a worker or the notebook run may write (RLIMIT_FSIZE)."""
_MAX_DEPTH = 64
_TORCH_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16",
                 "float32", "float64", "complex64", "complex128")
_ARRAY_KINDS = "biufcUS"


# ---------------------------------------------------------------------------------------------
# The safe encoding (worker -> grader)
# ---------------------------------------------------------------------------------------------


class EncodingError(Exception):
    """A value the encoding does not carry (too large, too deep)."""


def encode(message: dict[str, Any]) -> bytes:
    """``message`` (a dict whose ``"value"``, if any, is any Python value) as bytes: a 4-byte
    header length, the JSON header, then the ``.npy`` blobs the header refers to."""
    import numpy as np

    blobs: list[bytes] = []
    header = dict(message)
    if "value" in header:
        header["value"] = _tree(header["value"], blobs, 0, np)
    header["blobs"] = [len(b) for b in blobs]
    text = json.dumps(header).encode()
    size = len(text) + sum(map(len, blobs))
    if size > MAX_RESULT_BYTES:
        raise EncodingError(f"the result takes {size / 2**20:.0f} MB, more than the "
                            f"{MAX_RESULT_BYTES // 2**20} MB a result may take")
    return struct.pack(">I", len(text)) + text + b"".join(blobs)


def _blob(array: Any, blobs: list[bytes], np: Any) -> int:
    if array.dtype.kind not in _ARRAY_KINDS:
        raise EncodingError(f"arrays of dtype {array.dtype} are not supported")
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.require(array, requirements='C'), allow_pickle=False)
    blobs.append(buffer.getvalue())
    if sum(map(len, blobs)) > MAX_RESULT_BYTES:
        raise EncodingError(f"the result is larger than {MAX_RESULT_BYTES // 2**20} MB")
    return len(blobs) - 1


def _tree(value: Any, blobs: list[bytes], depth: int, np: Any) -> list[Any]:
    """``value`` as a JSON-able tagged tree (``["int", 3]``, ``["list", [...]]``, ...)."""
    if depth > _MAX_DEPTH:
        raise EncodingError(f"the result is nested more than {_MAX_DEPTH} levels deep")
    torch = sys.modules.get("torch")
    if value is None:
        return ["none"]
    if isinstance(value, bool):
        return ["bool", bool(value)]
    if isinstance(value, int):
        return ["int", int(value)]
    if isinstance(value, float):
        return ["float", float(value)]
    if isinstance(value, str):
        return ["str", str.__str__(value)]
    if torch is not None and isinstance(value, torch.Tensor):
        return _tensor_tree(value, blobs, np, torch)
    if isinstance(value, np.ndarray):
        return ["ndarray", _blob(value, blobs, np)]
    if isinstance(value, np.generic):
        return ["npscalar", _blob(np.asarray(value), blobs, np)]
    if isinstance(value, tuple | list | set | frozenset):
        kind = "tuple" if isinstance(value, tuple) else "set" if isinstance(
            value, set | frozenset) else "list"
        return [kind, [_tree(v, blobs, depth + 1, np) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[_tree(k, blobs, depth + 1, np), _tree(v, blobs, depth + 1, np)]
                         for k, v in value.items()]]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [[f.name, _tree(getattr(value, f.name), blobs, depth + 1, np)]
                  for f in dataclasses.fields(value)]
        return ["namespace", type(value).__name__, fields]
    if callable(getattr(value, "as_dict", None)):  # e.g. a PQStats-like result
        return _tree(value.as_dict(), blobs, depth + 1, np)
    return ["opaque", type(value).__name__]


def _tensor_tree(value: Any, blobs: list[bytes], np: Any, torch: Any) -> list[Any]:
    dtype = str(value.dtype).removeprefix("torch.")
    if dtype not in _TORCH_DTYPES or value.layout != torch.strided:
        raise EncodingError(f"tensors of dtype {value.dtype} / layout {value.layout} are not "
                            "supported")
    plain = value.detach().cpu().resolve_conj().resolve_neg()
    if dtype == "bfloat16":
        plain = plain.float()
    return ["tensor", _blob(plain.numpy(), blobs, np), dtype]


class DecodingError(Exception):
    """The bytes are not a message of this encoding."""


def decode(data: bytes) -> dict[str, Any]:
    """The message :func:`encode` wrote, built only from plain data (no pickle, no code)."""
    try:
        (length,) = struct.unpack(">I", data[:4])
        header = json.loads(data[4:4 + length])
        sizes = header["blobs"]
        if not isinstance(header, dict) or not all(isinstance(s, int) and s >= 0 for s in sizes):
            raise DecodingError("bad header")
        if 4 + length + sum(sizes) != len(data):
            raise DecodingError("the blob sizes do not add up")
        blobs, start = [], 4 + length
        for size in sizes:
            blobs.append(data[start:start + size])
            start += size
        if "value" in header:
            header["value"] = _value(header["value"], blobs, 0)
        return header
    except DecodingError:
        raise
    except Exception as err:  # malformed JSON, wrong types, bad npy, deep nesting, ...
        raise DecodingError(f"{type(err).__name__}: {err}"[:300]) from None


def _array(blobs: list[bytes], index: Any) -> Any:
    import numpy as np

    if not isinstance(index, int) or not 0 <= index < len(blobs):
        raise DecodingError("bad blob index")
    array = np.lib.format.read_array(io.BytesIO(blobs[index]), allow_pickle=False)
    if array.dtype.kind not in _ARRAY_KINDS:
        raise DecodingError(f"dtype {array.dtype} is not allowed")
    return array.copy()  # writable, owns its memory


def _value(node: Any, blobs: list[bytes], depth: int) -> Any:
    if depth > _MAX_DEPTH or not isinstance(node, list) or not node:
        raise DecodingError("bad value")
    tag, *rest = node
    simple = {"bool": bool, "int": int, "float": float, "str": str}
    if tag == "none":
        return None
    if tag in simple:
        if type(rest[0]) is not simple[tag] and not (tag == "float" and type(rest[0]) is int):
            raise DecodingError(f"bad {tag}")
        return simple[tag](rest[0])[:MAX_STRING_CHARS] if tag == "str" else simple[tag](rest[0])
    if tag in ("list", "tuple", "set"):
        items = [_value(v, blobs, depth + 1) for v in rest[0]]
        return {"list": list, "tuple": tuple, "set": set}[tag](items)
    if tag == "dict":
        return {_value(k, blobs, depth + 1): _value(v, blobs, depth + 1) for k, v in rest[0]}
    if tag == "ndarray":
        return _array(blobs, rest[0])
    if tag == "npscalar":
        return _array(blobs, rest[0])[()]
    if tag == "tensor":
        return _tensor(_array(blobs, rest[0]), rest[1])
    if tag == "namespace":
        return types.SimpleNamespace(**{str(k): _value(v, blobs, depth + 1) for k, v in rest[1]})
    if tag == "opaque":
        return _opaque(rest[0])
    raise DecodingError(f"unknown tag {tag!r}")


def _tensor(array: Any, dtype: Any) -> Any:
    import torch

    if dtype not in _TORCH_DTYPES:
        raise DecodingError(f"dtype {dtype!r} is not allowed")
    return torch.from_numpy(array).to(getattr(torch, dtype))


def _opaque(name: Any) -> object:
    """An empty object whose class has the name of what the learner returned, when that is a
    builtin's name (``generator``); else a plain ``object``."""
    import builtins

    name = str(name)
    if not (name.isidentifier() and (name in vars(builtins) or name in _OPAQUE_NAMES)):
        name = "object"
    return type(name, (), {"__repr__": lambda self: f"<{name}>"})()


_OPAQUE_NAMES = ("generator", "function", "method", "builtin_function_or_method", "module",
                 "coroutine", "dict_keys", "dict_values", "dict_items", "map", "filter", "zip")


# ---------------------------------------------------------------------------------------------
# The exercise worker
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    """What a worker needs: the exercise cell, the other code cells in notebook order (for
    their imports; the first ``earlier`` of them, those above the exercise cell, also for their
    functions, classes and constants), the function the exercise defines, the checker whose
    library targets are switched off, the memory cap and the empty folder to work in."""

    exercise_source: str
    other_sources: list[str]
    function: str
    checker: str
    memory_mb: int
    workdir: str
    earlier: int = 0


PRELOAD = ["course.grading_worker", "numpy", "torch", "course", "course.checks",
           "course.model", "course.fusion", "course.viz", "matplotlib.pyplot",
           "IPython.core.inputtransformer2"]
"""What the fork server imports once, so that each worker starts with it loaded."""


def serve_exercise(conn: Any, job: Job) -> None:
    """The worker's main: confine, run the cells, then answer calls until told to stop.

    ``conn`` is a ``multiprocessing`` connection; the worker only ever uses its
    ``send_bytes`` / ``recv_bytes`` (raw bytes), never pickles towards the grader. What the
    calls need (the library switch, the targets, the encoder) is bound before any learner code
    runs, so a cell that patches ``course.checks`` or this module changes nothing.
    """
    os.setsid()  # its own process group: the grader kills the group, children included
    _confine(job.memory_mb, job.workdir)
    try:
        answer = _answerer(conn, job.checker)
        namespace, errors = _run_cells(job)
        fn = namespace.get(job.function)
        ready = callable(fn)
        conn.send_bytes(encode({"kind": "ready" if ready else "undefined", "errors": errors}))
        while ready and answer(fn):
            pass
    except MemoryError:
        _send_quietly(conn, {"kind": "memory"})
    except BaseException:  # SystemExit, a closed connection, ...: the worker just ends
        pass
    os._exit(0)  # no atexit handlers, no flushing of anything the learner left behind


def _confine(memory_mb: int, workdir: str) -> None:
    """Limits, an empty working folder and silent output, before any learner code runs."""
    import torch

    torch.set_num_threads(1)
    size = _vm_size()
    limit = size + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.chdir(workdir)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the worker)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _vm_size() -> int:
    """This process's virtual memory size in bytes (what the preload already mapped)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _statements(source: str) -> list[ast.stmt]:
    """The top-level statements of a cell; IPython magics become calls of a no-op."""
    try:
        return ast.parse(source).body
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        return ast.parse(TransformerManager().transform_cell(source)).body


class _NoIPython:
    """``get_ipython()`` in a worker: every magic does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _definition(statement: ast.stmt) -> bool:
    """A function or class, or a name bound to a literal (``EPS = 1e-9``): cheap to run, and
    what a learner's function may use from a cell above it."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return True
    if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        try:
            ast.literal_eval(statement.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
        return all(isinstance(t, ast.Name) for t in targets)
    return False


def _run_cells(job: Job) -> tuple[dict[str, Any], list[list[str]]]:
    """The imports of the other cells, and the functions, classes and constants of those above
    the exercise cell (each statement on its own; a failing one is skipped), then the exercise
    cell statement by statement; returns the namespace and the exercise cell's errors as
    ``[name, message]``. The function counts only if the exercise cell itself binds its name
    (not when it is left over from another cell)."""
    namespace: dict[str, Any] = {"__name__": "__main__", "get_ipython": _NoIPython}
    later, earlier = job.other_sources[job.earlier:], job.other_sources[:job.earlier]
    # the cells below first, so that what the cells above bind wins, as in a run from the top
    for source, above in [*((s, False) for s in later), *((s, True) for s in earlier)]:
        try:
            statements = [s for s in _statements(source) if isinstance(s, ast.Import
                          | ast.ImportFrom) or (above and _definition(s))]
        except Exception:
            continue
        for statement in statements:
            _exec([statement], namespace)
    namespace.pop(job.function, None)
    try:
        statements = _statements(job.exercise_source)
    except SyntaxError as err:
        return namespace, [["SyntaxError", f"line {err.lineno}"]]
    errors = [e for e in (_exec([s], namespace) for s in statements) if e]
    return namespace, errors


def _exec(statements: list[ast.stmt], namespace: dict[str, Any]) -> list[str] | None:
    try:
        code = compile(ast.Module(body=statements, type_ignores=[]), "<exercise cell>", "exec")
        exec(code, namespace)
    except MemoryError:
        raise
    except Exception as err:
        return [type(err).__name__, _message(err)]
    return None


def _message(err: BaseException) -> str:
    try:
        text = str(err)
    except Exception:
        text = "(its message could not be read)"
    return text[:MAX_MESSAGE_CHARS]


def _targets(checker: str) -> list[Callable[..., Any]]:
    """The library functions the checker switches off while the learner's function runs."""
    from course import checks

    return list(checks.targets_for(checker))


def _answerer(conn: Any, checker: str) -> Callable[[Callable[..., Any]], bool]:
    """``answer(fn)``: run one call the grader asked for and send the result; False when told
    to stop. Everything it uses is looked up now, before the learner's cells run."""
    import pickle

    from course import checks

    disabled, called, targets = checks.library_disabled, checks.LibraryCalled, _targets(checker)
    loads, encode_, send, receive = pickle.loads, encode, conn.send_bytes, conn.recv_bytes

    def answer(fn: Callable[..., Any]) -> bool:
        call = loads(receive())  # from the trusted grader
        if call is None:
            return False
        args, kwargs = call
        try:
            with disabled(fn, targets) as blocked:
                value = fn(*args, **kwargs)
            reply = {"kind": "returned", "value": value}
            if blocked:  # the function called the library and caught what it raised
                reply = {"kind": "library", "qualname": blocked[0]}
        except called as err:
            reply = {"kind": "library", "qualname": _message(err)}
        except MemoryError:
            raise
        except Exception as err:
            if _out_of_memory(err):
                raise MemoryError from None
            reply = {"kind": "raised", "name": type(err).__name__, "message": _message(err)}
        try:
            data = encode_(reply)
        except EncodingError as err:
            data = encode_({"kind": "raised", "name": "ResultNotSupported", "message": str(err)})
        send(data)
        return True

    return answer


def _out_of_memory(err: Exception) -> bool:
    """torch reports a failed CPU allocation as a RuntimeError."""
    return isinstance(err, RuntimeError) and "can't allocate memory" in _message(err)


def _send_quietly(conn: Any, message: dict[str, Any]) -> None:
    try:
        conn.send_bytes(encode(message))
    except BaseException:
        pass


# ---------------------------------------------------------------------------------------------
# The notebook run (feedback only)
# ---------------------------------------------------------------------------------------------


def _limit_memory(memory_mb: int) -> None:
    """RLIMIT_DATA, not RLIMIT_AS: importing torch maps about 4 GB of address space that it
    never uses, so an address-space cap would fail at ``import torch``."""
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _kernel_main(argv: list[str]) -> None:
    """``python course/grading_worker.py kernel MB -f CONNECTION``: an ipykernel that dies with
    the notebook runner (PR_SET_PDEATHSIG) and runs under the memory cap."""
    import ctypes
    import runpy

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    _limit_memory(int(argv[0]))
    sys.argv = ["ipykernel_launcher", *argv[1:]]
    runpy.run_module("ipykernel_launcher", run_name="__main__")


def _kernel_manager(memory_mb: int) -> type:
    """A kernel manager whose ``python3`` kernel is this interpreter, started through
    :func:`_kernel_main` (whatever kernel the submission's metadata names is ignored)."""
    from course.teaching import kernel_manager

    return kernel_manager([*command(), "kernel", str(memory_mb), "-f", "{connection_file}"])


def run_notebook(path: str, result: str, cell_timeout: float, memory_mb: int) -> None:
    """Execute the notebook at ``path`` in its folder and write what went wrong, as
    ``{"cells": [[index, ename, evalue], ...], "died": str | null}``, to ``result``.

    Only error outputs are kept (the rest of what the notebook prints is dropped as it
    arrives), so a notebook that prints without end cannot fill the runner's memory.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    class ErrorsOnly(NotebookClient):
        def output(self, outs: list, msg: dict, display_id: Any, cell_index: int) -> Any:
            if msg["msg_type"] != "error":
                return None
            content = msg["content"]
            out = nbformat.v4.new_output("error", ename=str(content.get("ename", ""))[:200],
                                         evalue=str(content.get("evalue", ""))[:500],
                                         traceback=[])
            outs.append(out)
            return out

    nb = nbformat.read(path, as_version=4)
    client = ErrorsOnly(nb, timeout=cell_timeout, allow_errors=True, interrupt_on_timeout=True,
                        kernel_name="python3", kernel_manager_class=_kernel_manager(memory_mb),
                        extra_arguments=["--IPKernelApp.log_level=ERROR"],
                        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    died = None
    try:
        client.execute()
    except DeadKernelError:
        died = "the kernel died"
    except Exception as err:
        died = f"{type(err).__name__}: {_message(err)[:300]}"
    cells = [[i, o["ename"], o["evalue"]] for i, cell in enumerate(nb.cells)
             for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    with open(result, "w") as f:
        json.dump({"cells": cells[:50], "died": died}, f)


def command() -> list[str]:
    """How to run this file as a program: by its path, not ``-m course.grading_worker``, so
    that neither the notebook runner nor the kernel imports the ``course`` package (and
    torch) before the notebook asks for it."""
    return [sys.executable, os.path.abspath(__file__)]


def main(argv: list[str]) -> int:
    """``notebook PATH RESULT CELL_TIMEOUT MEMORY_MB`` or ``kernel MEMORY_MB ARGS...``."""
    if argv[:1] == ["kernel"]:
        _kernel_main(argv[1:])
        return 0
    if argv[:1] == ["notebook"] and len(argv) == 5:
        path, result, cell_timeout, memory_mb = argv[1:]
        _limit_memory(int(memory_mb) + 512)  # the runner holds little; the kernel is capped too
        run_notebook(path, result, float(cell_timeout), int(memory_mb))
        return 0
    print("usage: grading_worker.py notebook PATH RESULT CELL_TIMEOUT MEMORY_MB",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))  # run by path: the package folder is
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]  # not a top level
    raise SystemExit(main(sys.argv[1:]))
