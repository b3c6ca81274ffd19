"""Which category values the plaintext run report may print: those seen often enough in training.

The report and the `contract.yaml` beside it are plaintext, outside the encrypted store. A category
seen once or twice in training can identify a person, so a category value of a feature is printed
only when the training data held it at least `report.min_category_count` times (counted in the
run's training profile). The others are withheld everywhere the report would print them (the
contract copy, the profile table, slices, fairness groups, error analysis, anomaly descriptions),
and the report says how many were withheld and which setting shows them. The contract inside the
encrypted store keeps every category. Target classes are always shown (they are what the model
answers), and so are the slice markers ``(missing)`` and ``(other)``. Without a profile the counts
are unknown: every category value is withheld unless the setting is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keelml.data.contract import YAML_HEADER, Contract, contract_to_yaml

SETTING = "report.min_category_count"
MARKERS = frozenset({"(missing)", "(other)"})
WITHHELD = "(withheld: rare)"


def _counts(profile: Mapping[str, Any] | None) -> dict[str, dict[str, int]]:
    """Column -> value -> rows of the training profile holding it (the contract's domain, then the top values)."""
    found: dict[str, dict[str, int]] = {}
    for entry in (profile or {}).get("columns", []):
        counts = {str(item["value"]): int(item["count"]) for item in entry.get("top") or []
                  if isinstance(item, Mapping) and "value" in item}
        counts.update({str(k): int(v) for k, v in (entry.get("domain") or {}).items()})
        found[str(entry.get("name"))] = counts
    return found


@dataclass(frozen=True)
class Categories:
    """The rule for one report: what it may print of each categorical column."""

    min_count: int
    columns: frozenset[str]  # the contract's categorical features (category or string, not the target)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    domains: dict[str, list[str]] = field(default_factory=dict)  # the contract's categories per column

    @classmethod
    def of(cls, contract: Mapping[str, Any], profile: Mapping[str, Any] | None, min_count: int) -> Categories:
        target = contract.get("target")
        listed = [c for c in contract.get("columns", [])
                  if c.get("name") != target and (c.get("categories") is not None
                                                  or c.get("type") in ("category", "string"))]
        return cls(min_count, frozenset(str(c["name"]) for c in listed), _counts(profile),
                   {str(c["name"]): [str(v) for v in c.get("categories") or []] for c in listed})

    def shows(self, column: Any, value: Any) -> bool:
        """True when `value` of `column` may be printed (numbers, markers and columns that hold no categories)."""
        if self.min_count <= 0 or str(column) not in self.columns or value is None or str(value) in MARKERS:
            return True
        return self.counts.get(str(column), {}).get(str(value), 0) >= self.min_count

    def shown(self, column: Any, value: Any) -> Any:
        """`value`, or the withheld marker."""
        return value if self.shows(column, value) else WITHHELD

    def withheld(self) -> dict[str, int]:
        """Per column, how many of the contract's categories are withheld."""
        out = {name: sum(not self.shows(name, v) for v in values) for name, values in self.domains.items()}
        return {name: n for name, n in out.items() if n}

    def note(self) -> str:
        """One sentence for people: what was withheld and how to change it (plain text)."""
        withheld = self.withheld()
        if not withheld:
            return ""
        total = sum(withheld.values())
        parts = ", ".join(f"{name}: {n}" for name, n in withheld.items())
        return (f"{total} categories seen fewer than {self.min_count} times in the training data are withheld "
                f"from this report and its contract.yaml ({parts}): a rare value can identify a person. The "
                f"contract in the encrypted store keeps them; set {SETTING} (0 shows every category) to change it.")

    def contract_yaml(self, contract: Mapping[str, Any]) -> str:
        """The contract as YAML with withheld categories left out, and a header that says so."""
        data = dict(contract)
        data["columns"] = [{**c, "categories": [v for v in c["categories"] if self.shows(c["name"], v)]}
                           if c.get("categories") is not None else dict(c) for c in contract.get("columns", [])]
        text = contract_to_yaml(Contract.model_validate(data))
        withheld = self.withheld()
        if not withheld:
            return text
        per_column = "\n".join(f"#   {name}: {n} of its {len(self.domains[name])} categories withheld"
                               for name, n in withheld.items())
        version = Contract.model_validate(dict(contract)).version
        header = (f"# keelml data contract of this run (contract version {version}), beside its report "
                  "(plaintext).\n"
                  f"# Categories seen fewer than {self.min_count} times in the training data are withheld from "
                  "this copy\n# (a rare value can identify a person):\n"
                  f"{per_column}\n"
                  "# The contract in the encrypted store (the model bundle's component `contract`) keeps them; "
                  f"set\n# {SETTING} (0 shows every category) to list them here. As it stands this copy "
                  "would\n# quarantine rows that hold a withheld category: do not use it as contract.path "
                  "unchanged.\n")
        return header + text.removeprefix(YAML_HEADER)

    def profile(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        """The profile with the top values the report may not print left out."""
        columns = []
        for entry in profile.get("columns", []):
            if entry.get("top") is not None:
                entry = {**entry, "top": [i for i in entry["top"] if self.shows(entry.get("name"), i.get("value"))]}
            columns.append(entry)
        return {**profile, "columns": columns}

    def analysis(self, analysis: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Slices, fairness groups and error analysis without the category values the report may not print.

        Withheld slices and groups are left out (their count is kept as ``withheld``); a withheld value
        in a worst example's features is replaced by a marker.
        """
        if not analysis:
            return analysis
        out = dict(analysis)
        slices = analysis.get("slices")
        if isinstance(slices, Mapping) and slices.get("rows") is not None:
            rows = [r for r in slices["rows"] if self.shows(r.get("column"), r.get("slice"))]
            out["slices"] = {**slices, "rows": rows, "withheld": len(slices["rows"]) - len(rows)}
        fairness = analysis.get("fairness")
        if isinstance(fairness, Mapping) and fairness.get("columns"):
            out["fairness"] = {**fairness, "columns": [self._groups(entry) for entry in fairness["columns"]]}
        errors = analysis.get("error_analysis")
        if isinstance(errors, Mapping):
            worst = [w for w in errors.get("worst_slices") or [] if self.shows(w.get("column"), w.get("slice"))]
            examples = [{**x, "features": {c: self.shown(c, v) for c, v in (x.get("features") or {}).items()}}
                        for x in errors.get("worst_examples") or []]
            out["error_analysis"] = {**errors, "worst_slices": worst, "worst_examples": examples}
        return out

    def _groups(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        column = entry.get("column")
        groups = [g for g in entry.get("groups") or [] if self.shows(column, g.get("group"))]
        excluded = [g for g in entry.get("excluded") or [] if self.shows(column, g)]
        return {**entry, "groups": groups, "excluded": excluded,
                "withheld": len(entry.get("groups") or []) - len(groups)}
