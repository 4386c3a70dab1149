"""The one table that maps domain errors to status codes."""

import grpc
import pytest

from chatstack.core import errors


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidRequest("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.VersionConflict("x"), grpc.StatusCode.ABORTED),
        (errors.Overloaded("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.LimitExceeded("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.BackendUnavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_domain_error_maps_to_its_status(error: errors.ChatstackError, code: grpc.StatusCode) -> None:
    assert errors.status_for(error) == code


def test_subclass_of_a_domain_error_inherits_its_status() -> None:
    class SessionMissing(errors.NotFound):
        pass

    assert errors.status_for(SessionMissing("gone")) == grpc.StatusCode.NOT_FOUND


def test_every_domain_error_class_has_a_status() -> None:
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.ChatstackError)
               and c is not errors.ChatstackError]
    assert classes and all(errors.status_for(c("x")) != grpc.StatusCode.UNKNOWN for c in classes)
