"""Validation of a class_info mapping: one ConfigError per mistake, naming the file (or config key),
the key and the value, and saying what to give instead."""
from __future__ import annotations

import difflib
from typing import Any, Mapping, Optional

from ...errors import ConfigError

MAX_VALUE = 65535


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_class_info(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The checked fields of :class:`ClassInfo` (without ``source``) from a raw mapping."""
    from .class_info import KEYS, default_palette

    unknown = [k for k in data if k not in KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(KEYS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{where}: unknown class_info key '{unknown[0]}'{hint}; allowed: {', '.join(KEYS)}")
    names = _names(data.get("names"), where)
    n = len(names)
    palette = data.get("palette")
    fields: dict[str, Any] = {
        "names": names,
        "palette": _palette(palette, n, where) if palette is not None else tuple(map(tuple, default_palette(n))),
        "ignore_index": _ignore_index(data.get("ignore_index", 255), n, where),
        "reduce_zero_label": _flag(data.get("reduce_zero_label", False), "reduce_zero_label", where),
        "dataset": _text(data.get("dataset", ""), "dataset", where),
    }
    fields["flip_pairs"] = _flip_pairs(data.get("label_flip_pairs") or [], names, where)
    fields["label_ids"], fields["ignored_label_ids"] = _label_ids(data, n, where)
    if fields["label_ids"] is not None and fields["reduce_zero_label"]:
        raise ConfigError(f"{where}: label_ids and reduce_zero_label exclude each other; the label_ids table "
                          "already says which stored id each class has")
    if fields["reduce_zero_label"] and n + 1 > MAX_VALUE:
        raise ConfigError(f"{where}: {n} classes do not fit 16-bit labels with reduce_zero_label")
    return fields


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be text, got {value!r}")
    return value


def _flag(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _names(names: Any, where: str) -> tuple[str, ...]:
    if names is None:
        raise ConfigError(f"{where}: no 'names'; list the class names in class-id order, e.g. "
                          "names: [background, sky, ground]")
    if not isinstance(names, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in names):
        raise ConfigError(f"{where}: names must be a list of non-empty class names, got {names!r}")
    if len(names) < 2:
        raise ConfigError(f"{where}: names lists {len(names)} class; a class list needs at least 2 "
                          "(e.g. background and one object class)")
    if len(names) > MAX_VALUE:
        raise ConfigError(f"{where}: names lists {len(names)} classes; at most {MAX_VALUE} fit 16-bit labels")
    cleaned = tuple(x.strip() for x in names)
    seen: dict[str, int] = {}
    for i, name in enumerate(cleaned):
        if name in seen:
            raise ConfigError(f"{where}: class name '{name}' appears twice in names (ids {seen[name]} and {i}); "
                              "class names must be unique")
        seen[name] = i
    return cleaned


def _palette(palette: Any, n: int, where: str) -> tuple[tuple[int, int, int], ...]:
    if not isinstance(palette, (list, tuple)):
        raise ConfigError(f"{where}: palette must be a list of [R, G, B] colours, got {palette!r}")
    if len(palette) != n:
        raise ConfigError(f"{where}: palette has {len(palette)} colours for {n} classes (names); give one "
                          "[R, G, B] per class, in class order, or leave palette out for generated colours")
    out = []
    for i, c in enumerate(palette):
        if not (isinstance(c, (list, tuple)) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)):
            raise ConfigError(f"{where}: palette entry {i} is {c!r}; each colour is [R, G, B] with whole "
                              "numbers 0..255")
        out.append((int(c[0]), int(c[1]), int(c[2])))
    return tuple(out)


def _ignore_index(value: Any, n: int, where: str) -> int:
    if not _is_int(value) or not 0 <= value <= MAX_VALUE:
        raise ConfigError(f"{where}: ignore_index must be a whole number 0..{MAX_VALUE}, got {value!r}")
    if value < n:
        raise ConfigError(f"{where}: ignore_index {value} is a class id (the {n} classes are 0..{n - 1}); "
                          f"use a value >= {n}, usually 255")
    return int(value)


def _class_id(item: Any, names: tuple[str, ...], where: str) -> int:
    if isinstance(item, str):
        if item.strip() not in names:
            close = difflib.get_close_matches(item, list(names), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: label_flip_pairs names '{item}', which is not in names{hint}")
        return names.index(item.strip())
    if not _is_int(item) or not 0 <= item < len(names):
        raise ConfigError(f"{where}: label_flip_pairs holds {item!r}, outside the class ids 0..{len(names) - 1}; "
                          "give class ids or names")
    return int(item)


def _flip_pairs(pairs: Any, names: tuple[str, ...], where: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(pairs, (list, tuple)):
        raise ConfigError(f"{where}: label_flip_pairs must be a list of [a, b] pairs, got {pairs!r}")
    out: list[tuple[int, int]] = []
    used: set[int] = set()
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"{where}: label_flip_pairs entry {pair!r} is not a pair; write [left_arm, right_arm] "
                              "(class names or ids)")
        a, b = (_class_id(x, names, where) for x in pair)
        if a == b or a in used or b in used:
            raise ConfigError(f"{where}: label_flip_pairs entry {list(pair)!r} pairs a class with itself or a class "
                              "that is already in another pair; each class swaps with one other class")
        used.update((a, b))
        out.append((a, b))
    return tuple(out)


def _id_list(value: Any, key: str, where: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) and 0 <= v <= MAX_VALUE for v in value):
        raise ConfigError(f"{where}: {key} must be a list of whole numbers 0..{MAX_VALUE}, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: {key} lists an id twice")
    return [int(v) for v in value]


def _label_ids(data: Mapping[str, Any], n: int, where: str) -> tuple[Optional[tuple[int, ...]], tuple[int, ...]]:
    if data.get("label_ids") is None:
        if data.get("ignored_label_ids"):
            raise ConfigError(f"{where}: ignored_label_ids goes with label_ids (the stored id of each class)")
        return None, ()
    ids = _id_list(data["label_ids"], "label_ids", where)
    if len(ids) != n:
        raise ConfigError(f"{where}: label_ids has {len(ids)} ids for {n} classes (names); give the stored id "
                          "of each class, in class order")
    ignored = _id_list(data.get("ignored_label_ids") or [], "ignored_label_ids", where)
    both = sorted(set(ids) & set(ignored))
    if both:
        raise ConfigError(f"{where}: id {both[0]} is in both label_ids and ignored_label_ids")
    return tuple(ids), tuple(sorted(ignored))
