import datetime

from chatstack.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PreferenceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREFERENCE_KIND_UNSPECIFIED: _ClassVar[PreferenceKind]
    PREFERENCE_KIND_FEEDBACK: _ClassVar[PreferenceKind]
    PREFERENCE_KIND_BEST_OF: _ClassVar[PreferenceKind]
    PREFERENCE_KIND_REGENERATE: _ClassVar[PreferenceKind]
    PREFERENCE_KIND_EDIT: _ClassVar[PreferenceKind]
    PREFERENCE_KIND_UNDO: _ClassVar[PreferenceKind]
    PREFERENCE_KIND_MODERATED: _ClassVar[PreferenceKind]

class Rating(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RATING_UNSPECIFIED: _ClassVar[Rating]
    RATING_UP: _ClassVar[Rating]
    RATING_DOWN: _ClassVar[Rating]
PREFERENCE_KIND_UNSPECIFIED: PreferenceKind
PREFERENCE_KIND_FEEDBACK: PreferenceKind
PREFERENCE_KIND_BEST_OF: PreferenceKind
PREFERENCE_KIND_REGENERATE: PreferenceKind
PREFERENCE_KIND_EDIT: PreferenceKind
PREFERENCE_KIND_UNDO: PreferenceKind
PREFERENCE_KIND_MODERATED: PreferenceKind
RATING_UNSPECIFIED: Rating
RATING_UP: Rating
RATING_DOWN: Rating

class PreferenceCandidate(_message.Message):
    __slots__ = ("text", "reward", "kept", "turn_id", "completion_tokens", "tool_calls")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    text: str
    reward: float
    kept: bool
    turn_id: str
    completion_tokens: int
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    def __init__(self, text: _Optional[str] = ..., reward: _Optional[float] = ..., kept: _Optional[bool] = ..., turn_id: _Optional[str] = ..., completion_tokens: _Optional[int] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ...) -> None: ...

class PreferenceEvent(_message.Message):
    __slots__ = ("event_id", "kind", "owner", "session_id", "turn_id", "user_turn_id", "prompt", "candidates", "rating", "preferred_candidate", "reason", "original_message", "edited_message", "fork_session_id", "generator_model", "reward_model", "sampling", "create_time")
    class SamplingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EDITED_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FORK_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_MODEL_FIELD_NUMBER: _ClassVar[int]
    REWARD_MODEL_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: PreferenceKind
    owner: str
    session_id: str
    turn_id: str
    user_turn_id: str
    prompt: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    candidates: _containers.RepeatedCompositeFieldContainer[PreferenceCandidate]
    rating: Rating
    preferred_candidate: int
    reason: str
    original_message: str
    edited_message: str
    fork_session_id: str
    generator_model: str
    reward_model: str
    sampling: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[PreferenceKind, str]] = ..., owner: _Optional[str] = ..., session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., user_turn_id: _Optional[str] = ..., prompt: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., candidates: _Optional[_Iterable[_Union[PreferenceCandidate, _Mapping]]] = ..., rating: _Optional[_Union[Rating, str]] = ..., preferred_candidate: _Optional[int] = ..., reason: _Optional[str] = ..., original_message: _Optional[str] = ..., edited_message: _Optional[str] = ..., fork_session_id: _Optional[str] = ..., generator_model: _Optional[str] = ..., reward_model: _Optional[str] = ..., sampling: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
