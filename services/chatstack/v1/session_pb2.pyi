import datetime

from chatstack.v1 import common_pb2 as _common_pb2
from chatstack.v1 import preference_pb2 as _preference_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Session(_message.Message):
    __slots__ = ("session_id", "owner", "create_time", "update_time", "ttl_seconds", "metadata", "system_prompt", "system_prompt_tokens", "version", "turn_count", "total_tokens")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TURN_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    owner: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    ttl_seconds: int
    metadata: _containers.ScalarMap[str, str]
    system_prompt: str
    system_prompt_tokens: int
    version: int
    turn_count: int
    total_tokens: int
    def __init__(self, session_id: _Optional[str] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ttl_seconds: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., system_prompt: _Optional[str] = ..., system_prompt_tokens: _Optional[int] = ..., version: _Optional[int] = ..., turn_count: _Optional[int] = ..., total_tokens: _Optional[int] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("turn_id", "role", "content", "token_count", "create_time", "metadata", "position", "tool_calls", "tool_call_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    role: _common_pb2.Role
    content: str
    token_count: int
    create_time: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    position: int
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    tool_call_id: str
    def __init__(self, turn_id: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.Role, str]] = ..., content: _Optional[str] = ..., token_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., position: _Optional[int] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ..., tool_call_id: _Optional[str] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("session_id", "system_prompt", "system_prompt_tokens", "metadata", "ttl_seconds", "pending_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PENDING_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    system_prompt: str
    system_prompt_tokens: int
    metadata: _containers.ScalarMap[str, str]
    ttl_seconds: int
    pending_ms: int
    def __init__(self, session_id: _Optional[str] = ..., system_prompt: _Optional[str] = ..., system_prompt_tokens: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., ttl_seconds: _Optional[int] = ..., pending_ms: _Optional[int] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("session_id", "expected_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    expected_version: int
    def __init__(self, session_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PushTurnRequest(_message.Message):
    __slots__ = ("session_id", "role", "content", "token_count", "metadata", "expected_version", "pending_ms", "commit_turn_id", "replace_turn_id", "commit_session", "tool_calls", "tool_call_id", "join_pending_turn_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_MS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACE_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SESSION_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    JOIN_PENDING_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    role: _common_pb2.Role
    content: str
    token_count: int
    metadata: _containers.ScalarMap[str, str]
    expected_version: int
    pending_ms: int
    commit_turn_id: str
    replace_turn_id: str
    commit_session: bool
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    tool_call_id: str
    join_pending_turn_id: str
    def __init__(self, session_id: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.Role, str]] = ..., content: _Optional[str] = ..., token_count: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., expected_version: _Optional[int] = ..., pending_ms: _Optional[int] = ..., commit_turn_id: _Optional[str] = ..., replace_turn_id: _Optional[str] = ..., commit_session: _Optional[bool] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ..., tool_call_id: _Optional[str] = ..., join_pending_turn_id: _Optional[str] = ...) -> None: ...

class PushTurnResponse(_message.Message):
    __slots__ = ("turn", "version", "evicted_turns")
    TURN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVICTED_TURNS_FIELD_NUMBER: _ClassVar[int]
    turn: Turn
    version: int
    evicted_turns: int
    def __init__(self, turn: _Optional[_Union[Turn, _Mapping]] = ..., version: _Optional[int] = ..., evicted_turns: _Optional[int] = ...) -> None: ...

class PopTurnRequest(_message.Message):
    __slots__ = ("session_id", "expected_version", "pending_turn_id", "count")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    expected_version: int
    pending_turn_id: str
    count: int
    def __init__(self, session_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., pending_turn_id: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class PopTurnResponse(_message.Message):
    __slots__ = ("turn", "version", "turns")
    TURN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    turn: Turn
    version: int
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    def __init__(self, turn: _Optional[_Union[Turn, _Mapping]] = ..., version: _Optional[int] = ..., turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ...) -> None: ...

class PeekTurnsRequest(_message.Message):
    __slots__ = ("session_id", "n")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    n: int
    def __init__(self, session_id: _Optional[str] = ..., n: _Optional[int] = ...) -> None: ...

class PeekTurnsResponse(_message.Message):
    __slots__ = ("turns", "version")
    TURNS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    version: int
    def __init__(self, turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class GetTurnsRequest(_message.Message):
    __slots__ = ("session_id", "turn_id", "count")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    turn_id: str
    count: int
    def __init__(self, session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class GetTurnsResponse(_message.Message):
    __slots__ = ("turns", "version", "turn_count")
    TURNS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TURN_COUNT_FIELD_NUMBER: _ClassVar[int]
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    version: int
    turn_count: int
    def __init__(self, turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., version: _Optional[int] = ..., turn_count: _Optional[int] = ...) -> None: ...

class ListTurnsRequest(_message.Message):
    __slots__ = ("session_id", "page_size", "page_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    page_size: int
    page_token: str
    def __init__(self, session_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTurnsResponse(_message.Message):
    __slots__ = ("turns", "next_page_token", "version")
    TURNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    next_page_token: str
    version: int
    def __init__(self, turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetContextRequest(_message.Message):
    __slots__ = ("session_id", "token_budget")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    token_budget: int
    def __init__(self, session_id: _Optional[str] = ..., token_budget: _Optional[int] = ...) -> None: ...

class GetContextResponse(_message.Message):
    __slots__ = ("system_prompt", "system_prompt_tokens", "turns", "total_tokens", "truncated", "omitted_turns", "version")
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    OMITTED_TURNS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    system_prompt: str
    system_prompt_tokens: int
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    total_tokens: int
    truncated: bool
    omitted_turns: int
    version: int
    def __init__(self, system_prompt: _Optional[str] = ..., system_prompt_tokens: _Optional[int] = ..., turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., total_tokens: _Optional[int] = ..., truncated: _Optional[bool] = ..., omitted_turns: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class ForkSessionRequest(_message.Message):
    __slots__ = ("session_id", "keep_turns", "expected_version", "metadata", "before_turn_id", "new_session_id", "pending_ms")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_TURNS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    BEFORE_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_MS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    keep_turns: int
    expected_version: int
    metadata: _containers.ScalarMap[str, str]
    before_turn_id: str
    new_session_id: str
    pending_ms: int
    def __init__(self, session_id: _Optional[str] = ..., keep_turns: _Optional[int] = ..., expected_version: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ..., before_turn_id: _Optional[str] = ..., new_session_id: _Optional[str] = ..., pending_ms: _Optional[int] = ...) -> None: ...

class ForkSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class AnnotateTurnRequest(_message.Message):
    __slots__ = ("session_id", "turn_id", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    turn_id: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class AnnotateTurnResponse(_message.Message):
    __slots__ = ("turn",)
    TURN_FIELD_NUMBER: _ClassVar[int]
    turn: Turn
    def __init__(self, turn: _Optional[_Union[Turn, _Mapping]] = ...) -> None: ...

class RecordPreferenceRequest(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _preference_pb2.PreferenceEvent
    def __init__(self, event: _Optional[_Union[_preference_pb2.PreferenceEvent, _Mapping]] = ...) -> None: ...

class RecordPreferenceResponse(_message.Message):
    __slots__ = ("event_id", "replaced_event_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACED_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    replaced_event_id: str
    def __init__(self, event_id: _Optional[str] = ..., replaced_event_id: _Optional[str] = ...) -> None: ...

class ExportPreferencesRequest(_message.Message):
    __slots__ = ("after_event_id", "since", "owner", "kinds", "limit")
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_event_id: str
    since: _timestamp_pb2.Timestamp
    owner: str
    kinds: _containers.RepeatedScalarFieldContainer[_preference_pb2.PreferenceKind]
    limit: int
    def __init__(self, after_event_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[_preference_pb2.PreferenceKind, str]]] = ..., limit: _Optional[int] = ...) -> None: ...

class ExportPreferencesResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _preference_pb2.PreferenceEvent
    def __init__(self, event: _Optional[_Union[_preference_pb2.PreferenceEvent, _Mapping]] = ...) -> None: ...
