"""Applying a plan: execute its pending actions in order, under ``dind.policy``.

A fatal failure raises SetupError (naming what of that step stays applied); a
best-effort one is a warning and the rest of its step is skipped.
"""

from __future__ import annotations

from dind.actions import SKIPPED as PLANNED_SKIP
from dind.errors import SetupError
from dind.policy import DID, DONE, FAILED, LEFT, SKIPPED, explain, walk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.actions import Action
    from dind.kernel import Kernel
    from dind.log import Log
    from dind.plan import Plan


def apply(plan: Plan, kernel: Kernel, log: Log, strict: bool = False) -> None:
    """Execute the plan's pending actions; raise SetupError when dind must stop."""

    said: dict[int, str] = {}

    def attempt(action: Action) -> SetupError | None:
        try:
            what = action.execute(kernel)
        except OSError as err:
            return explain(action, err)
        except SetupError as err:
            return err
        if what:
            said[id(action)] = what
        return None

    def starting(step: str) -> None:
        for where, warning in plan.warnings:
            if where == step:
                log.warning(warning, step=step)

    applied: dict[str, int] = {}
    for result in walk(plan, attempt, strict, starting):
        action = result.action
        fields = action.fields()
        if result.outcome == DID:
            log.info(said.get(id(action)) or action.describe(), **fields)
            applied[action.step] = applied.get(action.step, 0) + 1
        elif result.outcome == DONE:
            note = f" ({action.note})" if action.note else ""
            log.debug(f"already done: {action.describe()}{note}", **fields)
        elif result.outcome == LEFT:
            log.warning(f"not done: {action.describe()}: {action.note}", **fields)
        elif result.outcome == SKIPPED and action.status == PLANNED_SKIP:
            log.info(f"skipped: {action.describe()}: {action.note}", **fields)
        elif result.outcome == SKIPPED:
            log.debug(f"skipped after an earlier failure: {action.describe()}", **fields)
        elif result.outcome == FAILED and result.error is not None:
            error = result.error
            if result.fatal:
                done = applied.get(action.step, 0)
                if done:
                    # Say so rather than leave a half-done step unmentioned.
                    error.args = (
                        f"{error} ({done} earlier action(s) of {action.step} stay applied)",
                    )
                raise error
            log.warning(
                f"{error} (best effort, continuing; --strict makes this fatal)",
                **fields,
                errno=error.errno,
            )
