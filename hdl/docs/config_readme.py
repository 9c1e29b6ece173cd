"""config/README.md from the config schema: every key with its type, default and description.

    python -m hdl.docs.config_readme > config/README.md

``tests/test_workflow.py`` keeps the committed file in sync with the schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterator, Mapping

from hdl.workflow import SCHEMA_PATH, load_yaml

COMMAND = "python -m hdl.docs.config_readme > config/README.md"

INTRODUCTION = f"""\
# Configuration keys

Generated from `workflow/schemas/config.schema.yaml` by `{COMMAND}`;
`tests/test_workflow.py` checks that this file is in sync. `config/config.yaml` is the default grid (CPU,
minutes), `config/paper.yaml` the paper's grid (GPU cluster), `.test/config.yaml` the tests' tiny grid.
An unknown key or a value of the wrong type stops Snakemake before any job starts, naming the key.

## Which value a cell gets

A cell's trainer settings come from six layers; each replaces the keys it gives (a null value gives
nothing) of the layers before it:

1. `train`: every cell;
2. `datasets.<dataset>`: the cells of one data set;
3. `methods.<method>`: the cells of one method;
4. `methods.<method>.datasets.<dataset>`: one method on one data set;
5. `grid.settings[].train`: the cells of one grid setting (for example a long-tailed schedule);
6. `grid.settings[].methods.<method>`: one method in one grid setting.

`arch`, `stage1_steps` and `stage2_steps` become `hdl train --arch/--steps`; every other key is passed as
`hdl train --set key=value` (trainer keys: the fields of `TrainConfig`; method keys: the fields of the
method's `Config` in hdl/ssl/; `hdl train` lists both for a wrong key). Split options come from `split`, then
`grid.settings[].split`: a split is shared by all methods of its setting, so there is no method layer.
`snakemake -n -p` prints every job's flags. An example of every layer (`config/paper.yaml` uses them all):

```yaml
methods:
  mixmatch:
    lambda_u: 75                      # 3: every MixMatch cell
    datasets:
      cifar100: {{lambda_u: 150}}       # 4: MixMatch on CIFAR-100
grid:
  settings:
    - dataset: cifar10
      labels: [1500]
      imbalance: [100]
      split: {{include_labeled: false}} # this setting's splits
      train: {{stage1_steps: 262144}}   # 5: every method in this setting
      methods:
        fixmatch: {{uratio: 2}}         # 6: FixMatch in this setting
```

## Keys

`<dataset>` and `<method>` stand for a data set or method name; "required" marks the keys a config must give.

| key | type | default | description |
| --- | --- | --- | --- |
"""


def config_readme(schema: Mapping[str, Any]) -> str:
    """Markdown listing every config key with its type, default and description."""
    lines = [
        f"| `{key}` | {_type_name(node, schema)} | {_default_text(node, required)} | {_flat(node.get('description', ''))} |"
        for key, node, required in _walk(schema, schema, "")
    ]
    return INTRODUCTION + "\n".join(lines) + "\n"


def _resolve(node: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The node with its ``$ref`` target merged in (the node's own keys win)."""
    if "$ref" not in node:
        return dict(node)
    target: Any = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    merged = _resolve(target, schema)
    merged.update({key: value for key, value in node.items() if key != "$ref"})
    return merged


def _walk(node: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, dict, bool]]:
    """(dotted key, resolved schema node, required) of every key below ``node``, depth first."""
    node = _resolve(node, schema)
    required = set(node.get("required", []))
    children = [(name, child, name in required) for name, child in node.get("properties", {}).items()]
    if "propertyNames" in node and isinstance(node.get("additionalProperties"), Mapping):
        # a mapping keyed by data set or method names: one row for all of them
        placeholder = _resolve(node["propertyNames"], schema).get("title", "name")
        children.append((f"<{placeholder}>", node["additionalProperties"], False))
    for name, child, is_required in children:
        child = _resolve(child, schema)
        key = f"{prefix}{name}"
        yield key, child, is_required
        if child.get("type") == "object":
            yield from _walk(child, schema, f"{key}.")
        if child.get("type") == "array" and "properties" in _resolve(child.get("items", {}), schema):
            yield from _walk(child["items"], schema, f"{key}[].")


def _type_name(node: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(value).strip(chr(34))}`" for value in node["enum"])
    if "anyOf" in node:
        return " \\| ".join(f"`{branch['const']}`" if "const" in branch else branch.get("type", "?") for branch in node["anyOf"])
    kind = node.get("type", "?")
    if kind == "array":
        item = _resolve(node.get("items", {}), schema)
        return f"list of {_type_name(item, schema) if 'properties' not in item else 'objects'}"
    if kind == "object" and "propertyNames" not in node and ("properties" not in node or node.get("additionalProperties")):
        return "mapping"  # free keys (`hdl train --set` values)
    return " \\| ".join(kind) if isinstance(kind, list) else kind


def _default_text(node: Mapping[str, Any], required: bool) -> str:
    if required:
        return "required"
    return f"`{json.dumps(node['default'])}`" if "default" in node else ""


def _flat(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdl.docs.config_readme", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    sys.stdout.write(config_readme(load_yaml(SCHEMA_PATH)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
