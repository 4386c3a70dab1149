from chatstack.v1 import common_pb2 as _common_pb2
from chatstack.v1 import preference_pb2 as _preference_pb2
from chatstack.v1 import session_pb2 as _session_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolChoiceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CHOICE_MODE_UNSPECIFIED: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_NONE: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_AUTO: _ClassVar[ToolChoiceMode]
    TOOL_CHOICE_MODE_REQUIRED: _ClassVar[ToolChoiceMode]

class ModerationStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODERATION_STAGE_UNSPECIFIED: _ClassVar[ModerationStage]
    MODERATION_STAGE_INPUT: _ClassVar[ModerationStage]
    MODERATION_STAGE_OUTPUT: _ClassVar[ModerationStage]

class RewardStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_STATUS_UNSPECIFIED: _ClassVar[RewardStatus]
    REWARD_STATUS_SCORED: _ClassVar[RewardStatus]
    REWARD_STATUS_PENDING: _ClassVar[RewardStatus]
    REWARD_STATUS_OFF: _ClassVar[RewardStatus]
TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode
TOOL_CHOICE_MODE_NONE: ToolChoiceMode
TOOL_CHOICE_MODE_AUTO: ToolChoiceMode
TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode
MODERATION_STAGE_UNSPECIFIED: ModerationStage
MODERATION_STAGE_INPUT: ModerationStage
MODERATION_STAGE_OUTPUT: ModerationStage
REWARD_STATUS_UNSPECIFIED: RewardStatus
REWARD_STATUS_SCORED: RewardStatus
REWARD_STATUS_PENDING: RewardStatus
REWARD_STATUS_OFF: RewardStatus

class ChatOptions(_message.Message):
    __slots__ = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "best_of", "context_token_budget", "echo_prompt", "constraint", "tools", "tool_choice", "parallel_tool_calls")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    BEST_OF_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    ECHO_PROMPT_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    best_of: int
    context_token_budget: int
    echo_prompt: bool
    constraint: _common_pb2.OutputConstraint
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.FunctionTool]
    tool_choice: ToolChoice
    parallel_tool_calls: bool
    def __init__(self, max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ..., best_of: _Optional[int] = ..., context_token_budget: _Optional[int] = ..., echo_prompt: _Optional[bool] = ..., constraint: _Optional[_Union[_common_pb2.OutputConstraint, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.FunctionTool, _Mapping]]] = ..., tool_choice: _Optional[_Union[ToolChoice, _Mapping]] = ..., parallel_tool_calls: _Optional[bool] = ...) -> None: ...

class ToolChoice(_message.Message):
    __slots__ = ("mode", "function_name")
    MODE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    mode: ToolChoiceMode
    function_name: str
    def __init__(self, mode: _Optional[_Union[ToolChoiceMode, str]] = ..., function_name: _Optional[str] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("tool_call_id", "output")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    output: str
    def __init__(self, tool_call_id: _Optional[str] = ..., output: _Optional[str] = ...) -> None: ...

class ChatRequest(_message.Message):
    __slots__ = ("session_id", "system_prompt", "message", "options", "tool_results")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    system_prompt: str
    message: str
    options: ChatOptions
    tool_results: _containers.RepeatedCompositeFieldContainer[ToolResult]
    def __init__(self, session_id: _Optional[str] = ..., system_prompt: _Optional[str] = ..., message: _Optional[str] = ..., options: _Optional[_Union[ChatOptions, _Mapping]] = ..., tool_results: _Optional[_Iterable[_Union[ToolResult, _Mapping]]] = ...) -> None: ...

class ChatSessionInfo(_message.Message):
    __slots__ = ("session_id", "created", "user_turn_id", "context_turns", "context_truncated", "prompt_tokens", "prompt")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    USER_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TURNS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    created: bool
    user_turn_id: str
    context_turns: int
    context_truncated: bool
    prompt_tokens: int
    prompt: str
    def __init__(self, session_id: _Optional[str] = ..., created: _Optional[bool] = ..., user_turn_id: _Optional[str] = ..., context_turns: _Optional[int] = ..., context_truncated: _Optional[bool] = ..., prompt_tokens: _Optional[int] = ..., prompt: _Optional[str] = ...) -> None: ...

class ChatDelta(_message.Message):
    __slots__ = ("text", "token_ids", "tool_calls")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCallDelta]
    def __init__(self, text: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCallDelta, _Mapping]]] = ...) -> None: ...

class ToolCallDelta(_message.Message):
    __slots__ = ("index", "id", "name", "arguments")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    name: str
    arguments: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class CandidateScore(_message.Message):
    __slots__ = ("index", "reward_score", "text", "completion_tokens", "chosen")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REWARD_SCORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    index: int
    reward_score: float
    text: str
    completion_tokens: int
    chosen: bool
    def __init__(self, index: _Optional[int] = ..., reward_score: _Optional[float] = ..., text: _Optional[str] = ..., completion_tokens: _Optional[int] = ..., chosen: _Optional[bool] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("session_read_seconds", "template_seconds", "ttft_seconds", "generation_seconds", "reward_seconds", "session_write_seconds", "total_seconds")
    SESSION_READ_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTFT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REWARD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SESSION_WRITE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    session_read_seconds: float
    template_seconds: float
    ttft_seconds: float
    generation_seconds: float
    reward_seconds: float
    session_write_seconds: float
    total_seconds: float
    def __init__(self, session_read_seconds: _Optional[float] = ..., template_seconds: _Optional[float] = ..., ttft_seconds: _Optional[float] = ..., generation_seconds: _Optional[float] = ..., reward_seconds: _Optional[float] = ..., session_write_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ...) -> None: ...

class ChatFinal(_message.Message):
    __slots__ = ("assistant_turn_id", "text", "reward_score", "candidates", "usage", "timings", "finish_reason", "session_version", "reward_status", "tool_calls", "moderation")
    ASSISTANT_TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REWARD_SCORE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    SESSION_VERSION_FIELD_NUMBER: _ClassVar[int]
    REWARD_STATUS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    MODERATION_FIELD_NUMBER: _ClassVar[int]
    assistant_turn_id: str
    text: str
    reward_score: float
    candidates: _containers.RepeatedCompositeFieldContainer[CandidateScore]
    usage: _common_pb2.TokenUsage
    timings: StageTimings
    finish_reason: _common_pb2.FinishReason
    session_version: int
    reward_status: RewardStatus
    tool_calls: _containers.RepeatedCompositeFieldContainer[_common_pb2.ToolCall]
    moderation: Moderation
    def __init__(self, assistant_turn_id: _Optional[str] = ..., text: _Optional[str] = ..., reward_score: _Optional[float] = ..., candidates: _Optional[_Iterable[_Union[CandidateScore, _Mapping]]] = ..., usage: _Optional[_Union[_common_pb2.TokenUsage, _Mapping]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., session_version: _Optional[int] = ..., reward_status: _Optional[_Union[RewardStatus, str]] = ..., tool_calls: _Optional[_Iterable[_Union[_common_pb2.ToolCall, _Mapping]]] = ..., moderation: _Optional[_Union[Moderation, _Mapping]] = ...) -> None: ...

class Moderation(_message.Message):
    __slots__ = ("stage", "category", "flagged_by", "scores", "rule", "at_token", "released_tokens", "refusal")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_BY_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    AT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RELEASED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    stage: ModerationStage
    category: str
    flagged_by: str
    scores: _containers.ScalarMap[str, float]
    rule: str
    at_token: int
    released_tokens: int
    refusal: str
    def __init__(self, stage: _Optional[_Union[ModerationStage, str]] = ..., category: _Optional[str] = ..., flagged_by: _Optional[str] = ..., scores: _Optional[_Mapping[str, float]] = ..., rule: _Optional[str] = ..., at_token: _Optional[int] = ..., released_tokens: _Optional[int] = ..., refusal: _Optional[str] = ...) -> None: ...

class ChatResponse(_message.Message):
    __slots__ = ("session", "delta", "final")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    session: ChatSessionInfo
    delta: ChatDelta
    final: ChatFinal
    def __init__(self, session: _Optional[_Union[ChatSessionInfo, _Mapping]] = ..., delta: _Optional[_Union[ChatDelta, _Mapping]] = ..., final: _Optional[_Union[ChatFinal, _Mapping]] = ...) -> None: ...

class RegenerateRequest(_message.Message):
    __slots__ = ("session_id", "options")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    options: ChatOptions
    def __init__(self, session_id: _Optional[str] = ..., options: _Optional[_Union[ChatOptions, _Mapping]] = ...) -> None: ...

class RegenerateResponse(_message.Message):
    __slots__ = ("session", "delta", "final")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    session: ChatSessionInfo
    delta: ChatDelta
    final: ChatFinal
    def __init__(self, session: _Optional[_Union[ChatSessionInfo, _Mapping]] = ..., delta: _Optional[_Union[ChatDelta, _Mapping]] = ..., final: _Optional[_Union[ChatFinal, _Mapping]] = ...) -> None: ...

class EditRequest(_message.Message):
    __slots__ = ("session_id", "turn_id", "message", "options")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    turn_id: str
    message: str
    options: ChatOptions
    def __init__(self, session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., message: _Optional[str] = ..., options: _Optional[_Union[ChatOptions, _Mapping]] = ...) -> None: ...

class EditResponse(_message.Message):
    __slots__ = ("session", "delta", "final")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    session: ChatSessionInfo
    delta: ChatDelta
    final: ChatFinal
    def __init__(self, session: _Optional[_Union[ChatSessionInfo, _Mapping]] = ..., delta: _Optional[_Union[ChatDelta, _Mapping]] = ..., final: _Optional[_Union[ChatFinal, _Mapping]] = ...) -> None: ...

class UndoRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class UndoResponse(_message.Message):
    __slots__ = ("removed_turns", "session_version")
    REMOVED_TURNS_FIELD_NUMBER: _ClassVar[int]
    SESSION_VERSION_FIELD_NUMBER: _ClassVar[int]
    removed_turns: _containers.RepeatedCompositeFieldContainer[_session_pb2.Turn]
    session_version: int
    def __init__(self, removed_turns: _Optional[_Iterable[_Union[_session_pb2.Turn, _Mapping]]] = ..., session_version: _Optional[int] = ...) -> None: ...

class ChatServiceCreateSessionRequest(_message.Message):
    __slots__ = ("system_prompt", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    system_prompt: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, system_prompt: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ChatServiceCreateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class ChatServiceGetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ChatServiceGetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: _session_pb2.Session
    def __init__(self, session: _Optional[_Union[_session_pb2.Session, _Mapping]] = ...) -> None: ...

class ChatServiceListSessionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ChatServiceListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[_session_pb2.Session]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[_session_pb2.Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ChatServiceDeleteSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ChatServiceDeleteSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("session_id", "page_size", "page_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    page_size: int
    page_token: str
    def __init__(self, session_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("system_prompt", "turns", "next_page_token")
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    system_prompt: str
    turns: _containers.RepeatedCompositeFieldContainer[_session_pb2.Turn]
    next_page_token: str
    def __init__(self, system_prompt: _Optional[str] = ..., turns: _Optional[_Iterable[_Union[_session_pb2.Turn, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubmitFeedbackRequest(_message.Message):
    __slots__ = ("session_id", "turn_id", "rating", "preferred_candidate", "reason")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    turn_id: str
    rating: _preference_pb2.Rating
    preferred_candidate: int
    reason: str
    def __init__(self, session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., rating: _Optional[_Union[_preference_pb2.Rating, str]] = ..., preferred_candidate: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SubmitFeedbackResponse(_message.Message):
    __slots__ = ("event_id", "replaced")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    replaced: bool
    def __init__(self, event_id: _Optional[str] = ..., replaced: _Optional[bool] = ...) -> None: ...
