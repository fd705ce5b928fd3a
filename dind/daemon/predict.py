"""``--check``'s predictions for the daemon steps' own actions."""

from __future__ import annotations

from dind.check.predict import FAILS, MAY_FAIL, WILL, Prediction
from dind.daemon.actions import LinkTools, MakeCertificates

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.actions import Action
    from dind.check.env import Env


def predict_daemon(action: Action, env: Env) -> Prediction:
    daemon = env.snap.evidence.daemon
    if isinstance(action, MakeCertificates):
        state = None if daemon is None else daemon.tls_state
        if state is not None and state.startswith("error: "):
            return Prediction(FAILS, "EINVAL", state.removeprefix("error: "))
        return Prediction(WILL, None, f"layout {state or 'unknown'}")
    if isinstance(action, LinkTools):
        return Prediction(WILL, None, action.note)
    return Prediction(MAY_FAIL, None, f"no prediction for {action.kind} actions")
