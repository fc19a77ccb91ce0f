"""sympy → generated numba source → cached njit kernels, batch and single-transition.

A reward is a list of features (formulas over raw inputs and earlier features) and a list of terms
(formulas over features) whose sum is the reward. ``compile_reward`` prints them as the Python
source of one module of four kernels (``codegen``, ``printer``), writes it to a cache directory
and imports it (``cache``); each kernel is compiled on first use, and numba's own ``cache=True``
machinery keeps the machine code beside the module, so a new process loading the same reward does
not compile again (``runtime``). The reward's numbers are passed to the kernels at run time, so an
edited weight or threshold reuses the compiled code.

The generated arithmetic follows ``sympy.lambdify(..., "numpy")`` with ``error_model="numpy"``
(division by zero gives inf/nan instead of raising); ``fastmath`` stays off, since it would let
LLVM assume there is no NaN. Constants are computed on doubles as numpy would (``exp(E)`` is
``numpy.exp(numpy.e)``).

exp, log, sin, cos, tanh, arctan, arctan2 and power come from glibc's libmvec when it has them and
numba generates AVX-512 or AVX2 code (``vecmath``). The batch kernels then run in chunks of rows:
a loop over the chunk computes the arguments of the calls it can, the calls run on whole vectors,
the next loop goes on with their results. Every row gets the same bits wherever it falls in a
chunk and whatever the number of threads, and ``single`` agrees with ``rewards`` to the bit.

The submodules are imported on first use of a name: the search's numba code needs ``vecmath``
only.
"""

from __future__ import annotations

from importlib import import_module

_PUBLIC = {
    "CODEGEN_VERSION": "symreward.kernels.codegen",
    "ENV_CACHE_DIR": "symreward.kernels.cache",
    "RewardKernels": "symreward.kernels.runtime",
    "VECTOR_MATH": "symreward.kernels.vecmath",
    "VECTOR_MATH_OPTIONS": "symreward.kernels.vecmath",
    "VectorMath": "symreward.kernels.vecmath",
    "block_math": "symreward.kernels.vecmath",
    "compile_reward": "symreward.kernels.runtime",
    "kernel_math": "symreward.kernels.vecmath",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> object:
    # Not kept in this module's globals: tests (and a user choosing another vector math) set
    # vecmath.VECTOR_MATH, and this must say what the kernels will use.
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'symreward.kernels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
