from chatstack.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Truncation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRUNCATION_UNSPECIFIED: _ClassVar[Truncation]
    TRUNCATION_DISABLED: _ClassVar[Truncation]
    TRUNCATION_AUTO: _ClassVar[Truncation]
TRUNCATION_UNSPECIFIED: Truncation
TRUNCATION_DISABLED: Truncation
TRUNCATION_AUTO: Truncation

class ScoreItem(_message.Message):
    __slots__ = ("conversation", "response")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    conversation: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    response: str
    def __init__(self, conversation: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., response: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("item", "truncation")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    item: ScoreItem
    truncation: Truncation
    def __init__(self, item: _Optional[_Union[ScoreItem, _Mapping]] = ..., truncation: _Optional[_Union[Truncation, str]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("score", "input_tokens")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    score: float
    input_tokens: int
    def __init__(self, score: _Optional[float] = ..., input_tokens: _Optional[int] = ...) -> None: ...

class ScoreBatchRequest(_message.Message):
    __slots__ = ("items", "truncation")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoreItem]
    truncation: Truncation
    def __init__(self, items: _Optional[_Iterable[_Union[ScoreItem, _Mapping]]] = ..., truncation: _Optional[_Union[Truncation, str]] = ...) -> None: ...

class ScoreBatchResponse(_message.Message):
    __slots__ = ("scores", "input_tokens")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    input_tokens: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., input_tokens: _Optional[_Iterable[int]] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("conversation", "candidates", "truncation")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    conversation: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    candidates: _containers.RepeatedScalarFieldContainer[str]
    truncation: Truncation
    def __init__(self, conversation: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., candidates: _Optional[_Iterable[str]] = ..., truncation: _Optional[_Union[Truncation, str]] = ...) -> None: ...

class RankedCandidate(_message.Message):
    __slots__ = ("index", "score", "text")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    index: int
    score: float
    text: str
    def __init__(self, index: _Optional[int] = ..., score: _Optional[float] = ..., text: _Optional[str] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("ranked",)
    RANKED_FIELD_NUMBER: _ClassVar[int]
    ranked: _containers.RepeatedCompositeFieldContainer[RankedCandidate]
    def __init__(self, ranked: _Optional[_Iterable[_Union[RankedCandidate, _Mapping]]] = ...) -> None: ...

class RewardServiceGetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RewardServiceGetModelInfoResponse(_message.Message):
    __slots__ = ("model", "max_model_len", "max_batch_items", "max_candidates", "model_version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_LEN_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    max_model_len: int
    max_batch_items: int
    max_candidates: int
    model_version: str
    def __init__(self, model: _Optional[str] = ..., max_model_len: _Optional[int] = ..., max_batch_items: _Optional[int] = ..., max_candidates: _Optional[int] = ..., model_version: _Optional[str] = ...) -> None: ...
