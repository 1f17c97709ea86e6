"""Models that are exactly one of several keys, as pydantic discriminated unions.

A runbook step is one of ``check``, ``action``, ``manual``, ``wait``, ``escalate``; an action is
one of ``sql``, ``signal``, ``http``, ``argv``, ``silence``; a check one of ``sql``, ``promql``,
``http``. Each is a base model (the fields every variant has) and one variant per key (the base
plus that key). :func:`one_of` makes the union: its tag is the one key a mapping holds (a key
whose value is null counts as absent).

A mapping with none or several of the keys, or a value that is no mapping, goes to a fallback
member (the base plus every key, of any type) that says so in the file's words — "a step is
exactly one of: check, action, manual, wait, escalate (got check, action)" — while its unknown
keys are still reported as unknown keys. pydantic puts the chosen member's tag in an error's
location; :func:`console.yamlfile.problems_from_validation` takes it out again, so a problem reads
``steps[0].action.sql.statement`` at the statement's line, as it would without the union.

A base class that derives from :class:`OneOf` builds its variant when called:
``ActionSpec(sql=SqlAction(...))`` is a ``SqlActionSpec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Union

from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, create_model, model_validator

FALLBACK = "?"  # the tag of the member that reports "exactly one of"


@dataclass(eq=False)
class _Union:
    keys: tuple[str, ...]
    variants: Mapping[str, type[BaseModel]]  # key -> variant
    fallback: type[BaseModel]
    annotation: Any
    _adapter: TypeAdapter | None = field(default=None, repr=False)

    def tag(self, value: Any) -> str:
        if isinstance(value, BaseModel):
            return next((k for k, v in self.variants.items() if type(value) is v), FALLBACK)
        if isinstance(value, Mapping):
            present = [k for k in self.keys if value.get(k) is not None]
            return present[0] if len(present) == 1 else FALLBACK
        return FALLBACK

    def variant(self, value: Any) -> type[BaseModel]:
        tag = self.tag(value)
        return self.fallback if tag == FALLBACK else self.variants[tag]

    @property
    def adapter(self) -> TypeAdapter:
        if self._adapter is None:
            self._adapter = TypeAdapter(self.annotation)
        return self._adapter


_UNIONS: dict[type[BaseModel], _Union] = {}


class OneOf(BaseModel):
    """Base of a model that is exactly one of several keyed variants (see :func:`one_of`).

    Calling the base builds the variant the keys name (the fallback, which raises the
    ValidationError a file would get, when they name none or several); ``model_validate`` on the
    base validates against the union."""

    def __new__(cls, /, *args: Any, **data: Any) -> Any:
        union = _UNIONS.get(cls)
        return super().__new__(union.variant(data) if union is not None else cls)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
        union = _UNIONS.get(cls)
        if union is None:
            return super().model_validate(obj, **kwargs)
        return union.adapter.validate_python(obj, **kwargs)


def one_of(base: type[OneOf], variants: Mapping[str, type[BaseModel]], exactly: str) -> Any:
    """The annotation of a field that holds one of ``variants`` (key -> a subclass of ``base``
    whose one extra field is that key). ``exactly`` opens the message for none or several keys:
    "a step is exactly one of" -> "a step is exactly one of: check, action, ... (got ...)"."""
    keys = tuple(variants)
    for key, variant in variants.items():
        extra = set(variant.model_fields) - set(base.model_fields)
        if not issubclass(variant, base) or extra != {key}:
            raise TypeError(f"{variant.__name__} must be {base.__name__} plus the one field '{key}'")
    choices = ", ".join(keys)

    def mapping(cls: type, value: Any) -> Any:
        if not isinstance(value, Mapping | BaseModel):
            raise ValueError(f"expected a mapping: {exactly}: {choices}")
        return value

    def one(self: BaseModel) -> BaseModel:
        present = [k for k in keys if getattr(self, k) is not None]
        raise ValueError(f"{exactly}: {choices}" + (f" (got {', '.join(present)})" if present else ""))

    fallback = create_model(
        f"{base.__name__}Keys",
        __base__=base,
        __module__=base.__module__,
        __validators__={
            "mapping": model_validator(mode="before")(classmethod(mapping)),
            "one": model_validator(mode="after")(one),
        },
        **{key: (Any, None) for key in keys},
    )
    union = _Union(keys, dict(variants), fallback, None)
    members = (*(Annotated[v, Tag(k)] for k, v in variants.items()), Annotated[fallback, Tag(FALLBACK)])
    union.annotation = Annotated[Union[members], Discriminator(union.tag)]  # noqa: UP007
    _UNIONS[base] = union
    return union.annotation
