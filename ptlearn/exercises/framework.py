"""The shared framework of the exercise checkers: verdicts, calling the learner's code safely,
comparing tensors and naming the mistake that reproduces a wrong result."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


class Mistake(Exception):
    """Raised inside a checker; its message tells the learner what is wrong and how to fix it."""


@dataclass
class CheckResult:
    """The verdict of a checker. ``bool(result)`` is ``result.passed``."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'✅ PASSED' if self.passed else '❌ NOT YET'} [{self.name}] {self.message}"


def exercise(name: str):
    """Turn ``check(*learner_fns) -> success message`` (raising :class:`Mistake` for a mistake)
    into a checker that prints its verdict and returns a :class:`CheckResult`."""

    def decorate(check):
        @functools.wraps(check)
        def run(*args, **kwargs) -> CheckResult:
            try:
                result = CheckResult(name, True, check(*args, **kwargs))
            except Mistake as mistake:
                result = CheckResult(name, False, str(mistake))
            print(result)
            return result

        return run

    return decorate


def call(fn, *args, inputs: str, **kwargs):
    """Call the learner's ``fn`` on copies of the tensor arguments (an in-place edit must not change
    the reference's inputs); turn "not implemented yet" and crashes into a :class:`Mistake` that
    says what the function was called with (``inputs`` describes it)."""
    args = [a.clone() if isinstance(a, Tensor) else a for a in args]
    kwargs = {k: v.clone() if isinstance(v, Tensor) else v for k, v in kwargs.items()}
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise Mistake(
            f"{getattr(fn, '__name__', None) or type(fn).__name__ + '.forward'} is not "
            "implemented yet: replace "
            "`raise NotImplementedError` with your code and run this cell again."
        ) from None
    except Exception as error:  # any crash in learner code becomes a readable verdict
        raise Mistake(
            f"your function raised {type(error).__name__}: {error} (called with {inputs})."
        ) from None


def expect_tensor(x, what: str, finite: bool = True) -> Tensor:
    """``x`` must be a tensor (with finite values: NaN usually comes from a fully masked row)."""
    if not isinstance(x, Tensor):
        raise Mistake(f"{what} should be a torch.Tensor, but it is a {type(x).__name__}.")
    if finite and x.is_floating_point() and not torch.isfinite(x).all():
        raise Mistake(f"{what} contains NaN or inf values.")
    return x


def expect_shape(x: Tensor, shape, what: str, hint: str = "") -> None:
    """``x.shape`` must be ``shape``; the message names both."""
    if tuple(x.shape) != tuple(shape):
        expected = f"{what} has shape {list(x.shape)}, expected {list(shape)}."
        raise Mistake(f"{expected} {hint}".strip())


def close(a: Tensor, b: Tensor, atol: float = 1e-4, rtol: float = 1e-4) -> bool:
    """Same shape and equal up to float rounding."""
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol, rtol=rtol)


def diagnose(got: Tensor, variants: dict[str, Tensor]) -> str | None:
    """The message of the first known mistake whose result equals ``got`` (None if none does).
    ``variants`` maps a message to what a function making that mistake returns."""
    return next((message for message, wrong in variants.items() if close(got, wrong)), None)


def describe(**tensors: Tensor) -> str:
    """``"q [2, 3, 5, 16], k [2, 3, 5, 16]"``: what the learner's function was called with."""
    return ", ".join(f"{name} {list(t.shape)}" for name, t in tensors.items())


# --- the notebook conventions: continue with the learner's code, hints, hidden solutions ---------


def use_learner(
    result, learner, reference, name: str | None = None, reference_name: str | None = None
):
    """What the chapter continues with after an exercise: the learner's ``learner`` where its check
    passed, else ptlearn's ``reference``, with one visible line saying which.

    ``result`` is the :class:`CheckResult` the checker returned (anything falsy, such as ``None``
    when the check cell was not run, counts as not passed). Use it as
    ``MyGPT = use_learner(result, MyGPT, reference=ptlearn.GPT)``: the learner's name is only ever
    rebound to a working implementation, so the rest of the chapter runs either way. ``name`` and
    ``reference_name`` default to the objects' ``__name__`` and ``module.__qualname__``.
    """
    name = name or getattr(learner, "__name__", "your code")
    ref_name = reference_name or ".".join(
        part
        for part in (getattr(reference, "__module__", ""), getattr(reference, "__qualname__", ""))
        if part
    )
    if result:
        print(f"✅ Using your {name} from here on.")
        return learner
    print(
        f"↪ Your {name} did not pass its check yet, so the chapter continues with ptlearn's "
        f"reference {ref_name}. Come back to the exercise when you like and run the cells again."
    )
    return reference


def hint_markdown(number: int, text: str) -> str:
    """The markdown of hint ``number`` (1-3): collapsed in every front end (Colab, VS Code,
    GitHub/nbviewer, JupyterLab) until the learner clicks on it."""
    return f"<details><summary>Hint {number}</summary>\n\n{text.strip()}\n\n</details>"


def solution_markdown(code: str, note: str = "") -> str:
    """The markdown of a collapsed solution: ``code`` in a fenced python block, ``note`` (an
    explanation, optional) after it. The code must define its own names (``attention_solution``,
    ``SolutionBlock``), never the learner's, and is not executed by the notebook."""
    body = f"```python\n{code.strip()}\n```"
    if note:
        body += f"\n\n{note.strip()}"
    return f"<details><summary>Solution</summary>\n\n{body}\n\n</details>"


# --- build-it exercises: the learner's module against ptlearn's, with copied weights -------------


def build(cls, *args, what: str, **kwargs):
    """Construct the learner's module ``cls(*args, **kwargs)``; a crash becomes a :class:`Mistake`
    that names the constructor call (``what``)."""
    try:
        module = cls(*args, **kwargs)
    except NotImplementedError:
        raise Mistake(
            f"{what} is not implemented yet: replace `raise NotImplementedError` with your code."
        ) from None
    except Exception as error:
        raise Mistake(f"{what} raised {type(error).__name__}: {error}.") from None
    if not isinstance(module, torch.nn.Module):
        raise Mistake(
            f"{what} should build a torch.nn.Module, but it is a {type(module).__name__}."
        )
    return module


def copy_weights(module: torch.nn.Module, state_dict: dict, what: str) -> None:
    """Load ptlearn's weights (``state_dict``) into the learner's ``module``, so that both compute
    with the same numbers; mismatched parameter names or shapes become a :class:`Mistake` that
    lists them."""
    mine = module.state_dict()
    missing = [k for k in state_dict if k not in mine]
    unexpected = [k for k in mine if k not in state_dict]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            extra = ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else "")
            parts.append(f"unexpected {extra}")
        raise Mistake(
            f"{what}'s parameters are not named like ptlearn's, so its weights cannot be copied "
            f"in ({'; '.join(parts)}). Keep the attribute names of the stub's __init__."
        )
    for key, value in state_dict.items():
        if tuple(mine[key].shape) != tuple(value.shape):
            raise Mistake(
                f"{what}.{key} has shape {list(mine[key].shape)}, ptlearn's has "
                f"{list(value.shape)}."
            )
    module.load_state_dict(state_dict)


def first_output(result, what: str) -> Tensor:
    """A module may return ``out`` or a tuple whose first element is ``out``."""
    if isinstance(result, (tuple, list)) and len(result) > 0:
        result = result[0]
    return expect_tensor(result, what)


def compare_gradients(
    mine: torch.nn.Module, ref: torch.nn.Module | dict, inputs: dict, what: str, names=None
):
    """After ``backward`` on both, the inputs' and parameters' gradients must agree. Outputs that
    agree with gradients that do not mean part of the computation is cut from the graph.
    ``ref``: the reference module, or its gradients as ``{parameter name: gradient}``; ``names``
    maps the learner's parameter names to the reference's where the two differ."""
    if isinstance(ref, torch.nn.Module):
        ref = {name: p.grad for name, p in ref.named_parameters()}
    for name, p in mine.named_parameters():
        r = ref.get(names.get(name, name) if names else name)
        if r is None:
            continue
        if p.grad is None:
            raise Mistake(
                f"{what}.{name} gets no gradient: it is not used in forward, or the computation is "
                "cut from the graph (.detach(), .data, torch.no_grad())."
            )
        if not close(p.grad, r, atol=1e-4, rtol=1e-3):
            raise Mistake(
                f"the outputs agree but the gradient of {what}.{name} does not: part of the "
                "computation is cut from the graph (.detach(), .data, torch.no_grad()) or "
                "changed in place."
            )
    for name, (x_mine, x_ref) in inputs.items():
        if x_ref.grad is not None and (
            x_mine.grad is None or not close(x_mine.grad, x_ref.grad, 1e-4, 1e-3)
        ):
            raise Mistake(f"the gradient with respect to {name} differs from ptlearn's.")
