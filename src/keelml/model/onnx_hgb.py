"""Histogram gradient boosting as an ONNX graph, native categorical splits included.

skl2onnx does not convert HistGradientBoosting's categorical (bitset) splits, so keelml builds
the graph itself with the ai.onnx.ml opset-5 `TreeEnsemble` operator, which has set-membership
branches and per-node missing-value routing, in double precision. The graph's one input is the
float64 matrix the estimator sees (numerics, then categorical codes; NaN for missing or unknown);
its output is what `predict_proba` (classification) or `predict` (regression) returns.

onnx (extra `onnx`) is imported inside `hgb_to_onnx`, the only function that needs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INPUT = "X"
OUTPUT = "Y"
_LEQ, _MEMBER = 0, 6


def _tree_nodes(predictor: Any, known: np.ndarray, f_idx_map: np.ndarray) -> tuple[list[dict[str, Any]], list[float]]:
    """One tree's interior nodes (in ONNX terms) and its leaf values."""
    nodes = predictor.nodes
    raw_bitsets = predictor.raw_left_cat_bitsets
    interior: dict[int, int] = {}
    leaves: dict[int, int] = {}
    leaf_values: list[float] = []
    for i, node in enumerate(nodes):
        if node["is_leaf"]:
            leaves[i] = len(leaf_values)
            leaf_values.append(float(node["value"]))
        else:
            interior[i] = len(interior)
    out: list[dict[str, Any]] = []
    for node in nodes:
        if node["is_leaf"]:
            continue
        left, right = int(node["left"]), int(node["right"])
        entry: dict[str, Any] = {
            "feature": int(node["feature_idx"]),
            "missing_left": int(node["missing_go_to_left"]),
            "true": leaves[left] if left in leaves else interior[left],
            "true_leaf": int(left in leaves),
            "false": leaves[right] if right in leaves else interior[right],
            "false_leaf": int(right in leaves),
        }
        if node["is_categorical"]:
            goes_left = _bits(raw_bitsets[int(node["bitset_idx"])])
            known_codes = _bits(known[int(f_idx_map[int(node["feature_idx"])])])
            if node["missing_go_to_left"]:  # unknown categories are routed like missing values
                goes_left |= set(range(256)) - known_codes
            entry.update(mode=_MEMBER, split=0.0, members=sorted(goes_left))
        else:
            entry.update(mode=_LEQ, split=float(node["num_threshold"]), members=None)
        out.append(entry)
    if not out:  # a tree that is a single leaf
        out.append({"feature": 0, "missing_left": 0, "true": 0, "true_leaf": 1, "false": 0, "false_leaf": 1,
                    "mode": _LEQ, "split": 0.0, "members": None})
    return out, leaf_values


def _bits(bitset: np.ndarray) -> set[int]:
    """The values 0..255 set in a bitset of eight little-endian uint32 words."""
    flags = np.unpackbits(np.asarray(bitset, dtype="<u4").view(np.uint8), bitorder="little")
    return set(np.flatnonzero(flags).tolist())


def hgb_to_onnx(estimator: Any, n_features: int) -> bytes:
    """The fitted HistGradientBoosting{Classifier,Regressor} as serialized ONNX (opset 18, ai.onnx.ml 5)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    known, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
    n_targets = int(baseline.size)
    attrs: dict[str, list[Any]] = {k: [] for k in (
        "nodes_featureids", "nodes_splits", "nodes_modes", "nodes_truenodeids", "nodes_falsenodeids",
        "nodes_trueleafs", "nodes_falseleafs", "nodes_missing_value_tracks_true", "tree_roots",
        "leaf_targetids", "leaf_weights", "membership_values")}
    for iteration in estimator._predictors:
        for target, predictor in enumerate(iteration):
            tree, leaf_values = _tree_nodes(predictor, known, f_idx_map)
            node_base, leaf_base = len(attrs["nodes_featureids"]), len(attrs["leaf_weights"])
            attrs["tree_roots"].append(node_base)
            for node in tree:
                attrs["nodes_featureids"].append(node["feature"])
                attrs["nodes_splits"].append(node["split"])
                attrs["nodes_modes"].append(node["mode"])
                attrs["nodes_truenodeids"].append(node["true"] + (leaf_base if node["true_leaf"] else node_base))
                attrs["nodes_falsenodeids"].append(node["false"] + (leaf_base if node["false_leaf"] else node_base))
                attrs["nodes_trueleafs"].append(node["true_leaf"])
                attrs["nodes_falseleafs"].append(node["false_leaf"])
                attrs["nodes_missing_value_tracks_true"].append(node["missing_left"])
                if node["members"] is not None:
                    attrs["membership_values"].extend([*map(float, node["members"]), float("nan")])
            attrs["leaf_targetids"].extend([target] * len(leaf_values))
            attrs["leaf_weights"].extend(leaf_values)

    def tensor(name: str, values: list[Any], dtype: Any) -> Any:
        return numpy_helper.from_array(np.asarray(values, dtype=dtype), name=name)

    ensemble_attrs: dict[str, Any] = {
        "nodes_featureids": attrs["nodes_featureids"],
        "nodes_splits": tensor("nodes_splits", attrs["nodes_splits"], np.float64),
        "nodes_modes": tensor("nodes_modes", attrs["nodes_modes"], np.uint8),
        "nodes_truenodeids": attrs["nodes_truenodeids"],
        "nodes_falsenodeids": attrs["nodes_falsenodeids"],
        "nodes_trueleafs": attrs["nodes_trueleafs"],
        "nodes_falseleafs": attrs["nodes_falseleafs"],
        "nodes_missing_value_tracks_true": attrs["nodes_missing_value_tracks_true"],
        "tree_roots": attrs["tree_roots"],
        "leaf_targetids": attrs["leaf_targetids"],
        "leaf_weights": tensor("leaf_weights", attrs["leaf_weights"], np.float64),
        "n_targets": n_targets,
        "aggregate_function": 1,  # SUM
        "post_transform": 0,  # NONE: the link is applied below, in double precision
    }
    if attrs["membership_values"]:
        ensemble_attrs["membership_values"] = tensor("membership_values", attrs["membership_values"], np.float64)
    nodes = [
        helper.make_node("TreeEnsemble", [INPUT], ["sum"], domain="ai.onnx.ml", **ensemble_attrs),
        helper.make_node("Add", ["sum", "baseline"], ["raw"]),
    ]
    initializers = [numpy_helper.from_array(baseline.reshape(1, -1), name="baseline")]
    link = type(estimator._loss.link).__name__
    classifier = hasattr(estimator, "classes_")
    if classifier and n_targets == 1:  # binary: [1 - p, p]
        initializers.append(numpy_helper.from_array(np.ones((1, 1)), name="one"))
        nodes += [helper.make_node("Sigmoid", ["raw"], ["p1"]),
                  helper.make_node("Sub", ["one", "p1"], ["p0"]),
                  helper.make_node("Concat", ["p0", "p1"], [OUTPUT], axis=1)]
        out_shape: list[Any] = [None, 2]
    elif classifier:
        nodes.append(helper.make_node("Softmax", ["raw"], [OUTPUT], axis=1))
        out_shape = [None, n_targets]
    elif link in ("IdentityLink", "LogLink"):  # regression: a flat vector of predictions
        if link == "LogLink":
            nodes.append(helper.make_node("Exp", ["raw"], ["mean"]))
        nodes.append(helper.make_node("Reshape", ["mean" if link == "LogLink" else "raw", "flat"], [OUTPUT]))
        initializers.append(numpy_helper.from_array(np.asarray([-1], dtype=np.int64), name="flat"))
        out_shape = [None]
    else:
        raise ValueError(f"no ONNX form for the {link} link")
    graph = helper.make_graph(
        nodes, "keelml_hgb",
        [helper.make_tensor_value_info(INPUT, TensorProto.DOUBLE, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, out_shape)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 5)],
                              producer_name="keelml")
    model.ir_version = 10
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data
