"""`hdl relabel`: HDL pseudo-labels for any embeddings, with adaptive k and diagnostics."""

from __future__ import annotations

import argparse
from dataclasses import asdict

import numpy as np

from hdl.cell import cell_arrays
from hdl.errors import UserError
from hdl.io import save_npz, write_json
from hdl.labeling import adaptive, baselines, hdl, knn, pipeline, select
from hdl.labeling.evaluate import coverage_curve, per_level_accuracy, score_labeler, scored
from hdl.labeling.inputs import RelabelInputs, check_k, load_inputs
from hdl.stopwatch import Stopwatch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--embeddings", required=True, help="(N, d) embeddings .npy, or the .npz of `hdl embed` (gives labels, probs, truth, index)")
    io.add_argument("--labels", help="(N,) int labels .npy, -1 for unlabeled (default: 'labels' of the .npz)")
    io.add_argument("--out", required=True, help="output .npz with labels, level, agreement, rank, index: HDL's, or --labeler's (one wave, agreement its confidence)")
    io.add_argument("--truth", help="(N,) true labels .npy for the diagnostics (default: 'truth' of the .npz)")
    io.add_argument("--probs", help="(N, C) model probabilities .npy for the argmax labelers (default: 'probs' of the .npz)")
    io.add_argument("--report", help="JSON report: k, k_scores, waves, coverage, graph, selection, timings (seconds per part: load, graph and its steps, each k's folds, the final HDL run, selection, diagnostics, write); with truth, accuracies")
    io.add_argument("--num-classes", type=int, help="number of classes (default: probs' columns, else the largest label + 1)")

    method, graph = add_labeling_arguments(parser)
    method.add_argument("--seed", type=int, default=0, help="seed of the hold-outs and of the k-means cells (default: %(default)s)")
    graph.add_argument("--threads", type=int, help="faiss threads (default: all OpenMP gives)")

    diagnostics = parser.add_argument_group("diagnostics")
    diagnostics.add_argument("--argmax-threshold", type=float, default=baselines.ARGMAX_THRESHOLD, help="confidence threshold of the thresholded-argmax labeler (default: %(default)s)")

    stage2 = add_selection_arguments(parser)
    stage2.add_argument("--extra-labels-out", help="write the selected HDL labels here (.npz: index, label, weight) for `hdl train --extra-labels`")


def add_labeling_arguments(parser: argparse.ArgumentParser) -> tuple[argparse._ArgumentGroup, argparse._ArgumentGroup]:
    """HDL's and its k-NN graph's options (``labeling_options`` reads them, with ``--seed``), shared by
    `hdl relabel` and `hdl train` (its label probe and refresh); returns the two groups."""
    method = parser.add_argument_group("HDL")
    method.add_argument("--k", default="auto", help="neighbours per sample: an integer, or 'auto' to pick from --k-candidates by hold-out (default: auto)")
    method.add_argument("--k-candidates", type=int, nargs="+", default=list(adaptive.K_CANDIDATES), help="k values tried by --k auto (default: %(default)s)")
    method.add_argument("--folds", type=int, default=adaptive.FOLDS, help="random stratified hold-outs per candidate k (default: %(default)s)")
    method.add_argument("--holdout", type=float, default=adaptive.HOLDOUT_FRACTION, help="fraction of each class's labels hidden per hold-out (default: %(default)s)")
    method.add_argument("--wave-rule", choices=hdl.WAVE_RULES, default="frontier", help="which unlabeled samples a wave labels: 'frontier' all with a labeled neighbour, ranked by their count of labeled neighbours, then agreement; 'max_count' (the paper read literally) only those with the highest count, which lets one region flood the graph (default: %(default)s)")
    method.add_argument("--wave-min-agreement", type=float, default=0.0, help="defer samples whose vote agreement is below this to later waves, where more neighbours vote; labeled last if nothing else is left (default: %(default)s, never defer, as the paper)")
    method.add_argument("--vote-weight", choices=hdl.VOTE_WEIGHTS, default="similarity", help="weight of a labeled neighbour's vote (default: %(default)s)")
    method.add_argument("--labeler", choices=baselines.STAGE2_LABELERS, default="hdl", help="whose labels stage 2 draws from, under the same selection and weights: 'hdl'; 'knn_vote', a similarity-weighted vote of the k nearest given labels; 'label_propagation' on the k-NN graph (Iscen et al. 2019); 'argmax', the model's prediction (needs probs). k is HDL's, fixed or chosen by hold-out (default: %(default)s)")

    graph = parser.add_argument_group("k-NN graph")
    graph.add_argument("--exact-max-size", type=int, default=knn.EXACT_MAX_SIZE, help="exact search up to this many samples; above, each sample is compared only with the samples of its --nprobe nearest k-means cells (default: %(default)s)")
    graph.add_argument("--nlist", type=int, help=f"k-means cells (default: 4 sqrt(N) up to {knn.FAISS_IVF_MAX_SIZE:,} samples, faiss's IVF-Flat index; sqrt(nprobe N) above, the cell-by-cell search)")
    graph.add_argument("--nprobe", type=int, default=knn.IVF_NPROBE, help="nearest cells each sample is compared with (default: %(default)s)")
    return method, graph


def add_selection_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Stage 2's selection options (``selection_options`` reads them), shared by `hdl relabel` and `hdl train`."""
    stage2 = parser.add_argument_group("stage-2 selection (see hdl/labeling/select.py)")
    stage2.add_argument("--selection", choices=select.RULES, default="confident", help="'confident': labels whose confidence reaches a threshold calibrated on the hold-out folds, within class quotas; 'all': every label HDL reached (default: %(default)s)")
    stage2.add_argument("--confidence", choices=(*select.CONFIDENCES, "auto"), default="auto", help="confidence of an HDL label: share of its k-NN with the same final label, its vote agreement, HDL's labeling order, its margin in a plain vote of the k nearest given labels, the classifier's agreement with it (needs probs), or distribution_aware: that agreement where the classifier agrees, else the consistency scaled by how much the classifier over-predicts the class it chose (DASO's upsilon; needs probs; each kind calibrated on its own); auto: argmax_agreement where the inputs have probs, else consistency (default: %(default)s)")
    stage2.add_argument("--selection-quantile", type=float, default=select.QUANTILE, help="threshold = this quantile of the confidences HDL gives hidden given labels (default: %(default)s)")
    stage2.add_argument("--class-quota", choices=select.CLASS_QUOTAS, default="uniform", help="most labels a class keeps of those above the threshold: 'labeled' its share of the given labels, 'uniform' an equal share, 'crest' CReST's (N_(C+1-r)/N_1)^(1/alpha) of its own, 'none' no cap (default: %(default)s)")
    stage2.add_argument("--temperature", type=float, default=select.DISTRIBUTION_TEMPERATURE, help="T of --confidence distribution_aware: a class the classifier predicts m_c times is trusted (m_c / max m)^(1/T); DASO's 1.5 where labeled and unlabeled class distributions match, 0.3 where not (default: %(default)s)")
    stage2.add_argument("--crest-alpha", type=float, default=select.CREST_ALPHA, help="alpha of --class-quota crest; larger keeps more of the head (default: %(default)s)")
    stage2.add_argument("--max-level", type=int, help="keep only the first N waves (default: all)")
    stage2.add_argument("--min-agreement", type=float, default=0.0, help="keep only labels with vote agreement >= this (default: %(default)s)")
    stage2.add_argument("--weight", choices=select.WEIGHTS, default="one", help="per-sample weight in stage 2: 'one', the vote agreement, the confidence, or entropy_balanced: Iscen et al.'s (1 - neighbour-label entropy / log C) times the inverse class frequency, for --selection all (default: %(default)s)")
    return stage2


def run(args: argparse.Namespace) -> int:
    stopwatch = Stopwatch()
    labeling = labeling_options(args)
    _check_options(args)
    with stopwatch.part("load"):
        inputs = load_inputs(args.embeddings, args.labels, args.probs, args.truth, args.num_classes)
    options = selection_options(args, has_probs=inputs.probs is not None)
    if options.confidence in select.NEEDS_PROBS and inputs.probs is None:
        raise UserError(f"--confidence {options.confidence} needs the model's probabilities: pass --probs, or the .npz of `hdl embed`")
    if labeling.labeler == "argmax" and inputs.probs is None:
        raise UserError("--labeler argmax needs the model's probabilities: pass --probs, or the .npz of `hdl embed`")
    n = len(inputs.labels)
    check_k([labeling.k] if labeling.k is not None else list(labeling.k_candidates), n)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)

    try:
        relabeling = pipeline.relabel(
            inputs.embeddings, inputs.labels, inputs.n_classes, inputs.probs, labeling, options, stopwatch
        )
    except pipeline.NothingToCalibrate:
        raise UserError(
            "--selection confident needs hidden given labels to calibrate on, but no class has two labels; "
            "label at least two samples of some class, or pass --selection all"
        ) from None
    chosen, result, selection = relabeling.chosen, relabeling.chosen.result, relabeling.selection
    unlabeled = inputs.labels < 0

    report = {
        "k": chosen.k,
        "k_scores": {str(k): score for k, score in chosen.k_scores.items()},
        "waves": result.waves,
        "coverage": float((result.labels[unlabeled] >= 0).mean()) if unlabeled.any() else 1.0,
        "n_samples": n,
        "n_labeled": int((~unlabeled).sum()),
        "graph": asdict(relabeling.plan),
        "cell": None if inputs.cell is None else inputs.cell.known(),
    }
    with stopwatch.part("selection"):
        report["selection"] = _selection_report(options, inputs, relabeling)
    if inputs.truth is not None:
        with stopwatch.part("diagnostics"):
            report.update(_diagnostics(inputs, relabeling.graph, chosen.k, result, relabeling.confidence, report["coverage"], args.argmax_threshold))

    with stopwatch.part("write"):
        cell = cell_arrays(inputs.cell)  # the embeddings' cell, so that `hdl train --extra-labels` can check it
        stage2 = relabeling.stage2.result
        save_npz(args.out, labels=stage2.labels, level=stage2.level, agreement=stage2.agreement, rank=stage2.rank, index=inputs.index, **cell)
        if args.extra_labels_out:
            save_npz(args.extra_labels_out, index=inputs.index[selection.positions], label=selection.labels, weight=selection.weights, **cell)
    timings = stopwatch.report()
    largest = stopwatch.largest()
    report["seconds"] = timings["seconds"]
    report["timings"] = {**timings, "largest": largest, "graph": {**asdict(relabeling.plan), "steps": relabeling.graph_steps.report()["parts"]}}
    if args.report:
        write_json(args.report, report)
    chosen_report = report["selection"]
    print(f"hdl relabel: k={chosen.k}, {result.waves} waves, coverage {report['coverage']:.3f}"
          + (f", accuracy {report['accuracy']:.4f}" if "accuracy" in report else "")
          + f"; stage 2 keeps {chosen_report['n_selected']} of {chosen_report['n_reached']} labels"
          + ("" if relabeling.labeler == "hdl" else f" of {relabeling.labeler}")
          + (f" (accuracy {chosen_report['accuracy']:.4f})" if chosen_report["accuracy"] is not None else ""))
    print(f"hdl relabel: {timings['seconds']:.2f} s, the largest part {largest} ({stopwatch.seconds(largest):.2f} s"
          + (f", {relabeling.plan.index} search" if largest == "graph" else "") + ")")
    return 0


def labeling_options(args: argparse.Namespace) -> pipeline.LabelingOptions:
    """The options of ``add_labeling_arguments`` and ``--seed``, checked."""
    fixed_k = _parse_k(args.k)
    _refuse_any([
        (args.folds >= 1, f"--folds must be at least 1, got {args.folds}"),
        (0 < args.holdout < 1, f"--holdout must lie in (0, 1), got {args.holdout}"),
        (args.exact_max_size >= 0, f"--exact-max-size must be >= 0, got {args.exact_max_size}"),
        (args.nprobe >= 1 and (args.nlist is None or args.nlist >= 1), "--nprobe and --nlist must be at least 1"),
        (0 <= args.wave_min_agreement <= 1, f"--wave-min-agreement must lie in [0, 1], got {args.wave_min_agreement}"),
    ])
    return pipeline.LabelingOptions(
        k=fixed_k, k_candidates=tuple(args.k_candidates), folds=args.folds, holdout=args.holdout, wave_rule=args.wave_rule,
        wave_min_agreement=args.wave_min_agreement, vote_weight=args.vote_weight, seed=args.seed,
        exact_max_size=args.exact_max_size, nlist=args.nlist, nprobe=args.nprobe, labeler=args.labeler,
    )


def selection_options(args: argparse.Namespace, has_probs: bool) -> pipeline.SelectionOptions:
    """The options of ``add_selection_arguments``, checked; ``--confidence auto`` is argmax_agreement where
    the labels come with the model's probabilities (``has_probs``), else consistency."""
    _refuse_any([
        (0 <= args.min_agreement <= 1, f"--min-agreement must lie in [0, 1], got {args.min_agreement}"),
        (args.max_level is None or args.max_level >= 1, f"--max-level must be at least 1, got {args.max_level}"),
        (0 <= args.selection_quantile <= 1, f"--selection-quantile must lie in [0, 1], got {args.selection_quantile}"),
        (args.crest_alpha > 0, f"--crest-alpha must be positive, got {args.crest_alpha}"),
        (args.temperature > 0, f"--temperature must be positive, got {args.temperature}"),
    ])
    confidence = args.confidence if args.confidence != "auto" else ("argmax_agreement" if has_probs else "consistency")
    return pipeline.SelectionOptions(
        rule=args.selection, confidence=confidence, quantile=args.selection_quantile, class_quota=args.class_quota,
        crest_alpha=args.crest_alpha, temperature=args.temperature, max_level=args.max_level,
        min_agreement=args.min_agreement, weight=args.weight,
    )


def _selection_report(options: pipeline.SelectionOptions, inputs: RelabelInputs, relabeling: pipeline.Relabeling) -> dict:
    """How stage 2's labels were chosen, and ``pipeline.selection_summary``'s counts and accuracies of
    them; with truth and probs, the model's argmax at the same coverage, and with truth the
    accuracy-coverage curve of HDL's labels under each confidence these inputs allow."""
    selection, result = relabeling.selection, relabeling.chosen.result
    unlabeled = inputs.labels < 0
    summary = pipeline.selection_summary(relabeling, inputs.labels, inputs.n_classes, inputs.probs, inputs.truth)
    truth = inputs.truth
    argmax_accuracy = None
    if truth is not None and inputs.probs is not None:
        argmax_accuracy = score_labeler(baselines.argmax_labels(inputs.probs, inputs.labels), truth, unlabeled, summary["coverage"])["accuracy"]
    thresholds = selection.thresholds
    return {
        "labeler": relabeling.labeler,
        "rule": options.rule,
        "confidence": options.confidence,
        "temperature": options.temperature if options.confidence == "distribution_aware" else None,
        "quantile": options.quantile if options.rule == "confident" else None,
        "threshold": None if thresholds is None else thresholds.get("all"),
        "thresholds": thresholds,
        "class_quota": options.class_quota,
        "crest_alpha": options.crest_alpha if options.class_quota == "crest" else None,
        "quotas": None if selection.quotas is None else selection.quotas.tolist(),
        "weight": options.weight,
        **summary,
        "argmax_accuracy": argmax_accuracy,
        "confidence_curves": {} if truth is None else {
            kind: coverage_curve(baselines.Labeling(result.labels, kind_confidence), truth, unlabeled)
            for kind, kind_confidence in _confidences(options, inputs, relabeling).items()
        },
    }


def _confidences(options: pipeline.SelectionOptions, inputs: RelabelInputs, relabeling: pipeline.Relabeling) -> dict:
    """Every confidence of HDL's labels these inputs allow: none that needs probs without them, nor
    knn_margin where the k-NN vote is too large to run."""
    unavailable = set() if inputs.probs is not None else set(select.NEEDS_PROBS)
    if "knn_vote" in baselines.skipped_at_size(len(inputs.labels), int((inputs.labels >= 0).sum()), inputs.n_classes, inputs.embeddings.shape[1]):
        unavailable.add("knn_margin")
    return {
        kind: pipeline.confidence_of(kind, options, relabeling, inputs.labels, inputs.embeddings, inputs.probs)
        for kind in select.CONFIDENCES if kind not in unavailable or kind == options.confidence
    }


def _diagnostics(
    inputs: RelabelInputs,
    graph: knn.KnnGraph,
    k: int,
    result: hdl.HdlResult,
    confidence: np.ndarray,
    coverage: float,
    argmax_threshold: float,
) -> dict:
    """HDL's accuracy on the unlabeled samples with a true label (``scored``; a pool's have none) and the
    comparison labelers' at HDL's coverage
    (``skipped``: those too large to run on this input, and why). HDL's coverage curve ranks its
    labels by ``confidence``, the one the stage-2 selection uses."""
    truth, labels, unlabeled = inputs.truth, inputs.labels, inputs.labels < 0
    hdl_labeling = baselines.Labeling(result.labels, confidence)
    skipped = baselines.skipped_at_size(len(labels), int((~unlabeled).sum()), inputs.n_classes, inputs.embeddings.shape[1])
    labelers = {"hdl": hdl_labeling}
    if "knn_vote" not in skipped:
        labelers["knn_vote"] = baselines.knn_vote(inputs.embeddings, labels, inputs.n_classes, k)
    if "label_propagation" not in skipped:
        labelers["label_propagation"] = baselines.label_propagation(graph, labels, inputs.n_classes)
    if inputs.probs is not None:
        labelers["argmax"] = baselines.argmax_labels(inputs.probs, labels)
        labelers["argmax_threshold"] = baselines.thresholded_argmax(inputs.probs, labels, argmax_threshold)
    hdl_score = score_labeler(hdl_labeling, truth, unlabeled, 1.0, n_classes=inputs.n_classes)
    reached = scored(unlabeled, truth) & (result.labels >= 0)
    comparison = {}
    for name, labeling in labelers.items():
        if name != "hdl":
            score = score_labeler(labeling, truth, unlabeled, coverage, n_classes=inputs.n_classes)
            comparison[name] = {"accuracy": score["accuracy"], "coverage": score["coverage"]}
    return {
        "accuracy": hdl_score["accuracy"],
        "scored": hdl_score["scored"],  # the unlabeled samples with a true label: all that are scored
        "per_class": hdl_score["per_class"],
        "per_level": per_level_accuracy(result.level[reached], result.labels[reached] == truth[reached]),
        "comparison": comparison,
        "skipped": skipped,
        "coverage_curve": {name: coverage_curve(labeling, truth, unlabeled) for name, labeling in labelers.items()},
    }


def _parse_k(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"--k must be 'auto' or an integer, got {value!r}") from None


def _check_options(args: argparse.Namespace) -> None:
    """`hdl relabel`'s own options (the shared ones: ``labeling_options``, ``selection_options``)."""
    _refuse_any([
        (args.threads is None or args.threads >= 1, f"--threads must be at least 1, got {args.threads}"),
        (0 <= args.argmax_threshold <= 1, f"--argmax-threshold must lie in [0, 1], got {args.argmax_threshold}"),
        (args.num_classes is None or args.num_classes >= 1, f"--num-classes must be at least 1, got {args.num_classes}"),
    ])


def _refuse_any(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise UserError(message)
