from chatstack.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FlaggedBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLAGGED_BY_UNSPECIFIED: _ClassVar[FlaggedBy]
    FLAGGED_BY_RULES: _ClassVar[FlaggedBy]
    FLAGGED_BY_MODEL: _ClassVar[FlaggedBy]
FLAGGED_BY_UNSPECIFIED: FlaggedBy
FLAGGED_BY_RULES: FlaggedBy
FLAGGED_BY_MODEL: FlaggedBy

class CheckConversation(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ...) -> None: ...

class CheckItem(_message.Message):
    __slots__ = ("conversation", "text")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    conversation: CheckConversation
    text: str
    def __init__(self, conversation: _Optional[_Union[CheckConversation, _Mapping]] = ..., text: _Optional[str] = ...) -> None: ...

class CheckPolicy(_message.Message):
    __slots__ = ("categories", "thresholds")
    class ThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    thresholds: _containers.ScalarMap[str, float]
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("items", "policy")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CheckItem]
    policy: CheckPolicy
    def __init__(self, items: _Optional[_Iterable[_Union[CheckItem, _Mapping]]] = ..., policy: _Optional[_Union[CheckPolicy, _Mapping]] = ...) -> None: ...

class CategoryScore(_message.Message):
    __slots__ = ("category", "score")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    category: str
    score: float
    def __init__(self, category: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class RuleMatch(_message.Message):
    __slots__ = ("category", "rule", "start", "end")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    category: str
    rule: str
    start: int
    end: int
    def __init__(self, category: _Optional[str] = ..., rule: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("flagged", "category", "flagged_by", "scores", "rules", "input_tokens")
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_BY_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    flagged: bool
    category: str
    flagged_by: FlaggedBy
    scores: _containers.RepeatedCompositeFieldContainer[CategoryScore]
    rules: _containers.RepeatedCompositeFieldContainer[RuleMatch]
    input_tokens: int
    def __init__(self, flagged: _Optional[bool] = ..., category: _Optional[str] = ..., flagged_by: _Optional[_Union[FlaggedBy, str]] = ..., scores: _Optional[_Iterable[_Union[CategoryScore, _Mapping]]] = ..., rules: _Optional[_Iterable[_Union[RuleMatch, _Mapping]]] = ..., input_tokens: _Optional[int] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...

class SafetyServiceGetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SafetyServiceGetModelInfoResponse(_message.Message):
    __slots__ = ("model", "max_model_len", "max_items", "categories", "model_version", "thresholds")
    class ThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_LEN_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    max_model_len: int
    max_items: int
    categories: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    thresholds: _containers.ScalarMap[str, float]
    def __init__(self, model: _Optional[str] = ..., max_model_len: _Optional[int] = ..., max_items: _Optional[int] = ..., categories: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ..., thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...
