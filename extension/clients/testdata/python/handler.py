# The business function of the emulator test, as a team migrating from the
# original sample writes it: one import, one decorator.
import lambda_circuit_breaker
from lambda_circuit_breaker import circuit_breaker


def fallback(err, event, context):
    circuit = getattr(err, "circuit", None)
    return {"result": "fallback", "state": circuit["state"] if circuit else None, "error": str(err)}


@circuit_breaker("payments", fallback=fallback)
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("downstream answered 503")
    return {"result": "called", "module": lambda_circuit_breaker.__file__}
