"""Stage 5: pseudo-label quality (:func:`mhubert.clustering.quality.report`), the LID probe
(``mhubert lid train | evaluate``) and the ML-SUPERB-style probes (:mod:`mhubert.eval.iteration`),
into the iteration's :class:`mhubert.artifacts.EvalReport`."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Metrics, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def evaluate(manifest_uri: str, labels_uri: str, model_uri: str, output_root: str, iteration: int,
             preset: str, quality: Output[Metrics], lid_metrics: Output[Metrics],
             confusion: Output[ClassificationMetrics], report: Output[HTML],
             probes: Output[Metrics], probe_confusion: Output[ClassificationMetrics], init_index: str = "",
             lid_probe: bool = True,
             lid_overrides: list[str] = [],  # noqa: B006 (KFP needs a literal default)
             superb_overrides: list[str] = [],  # noqa: B006
             superb_baseline: bool = False, on_change: str = "stop",
             cluster_overrides: list[str] = []) -> str:  # noqa: B006
    """Score the iteration into ``RunLayout(output_root).iteration(N).eval``: the k-means quality
    report (agreement with exact k-means, PNMI/purity against languages, unit-LID accuracy of the
    labels, cluster sizes) of the iteration's index (or ``init_index``, which has no sample here to
    score), and, with ``lid_probe``, a LID head trained on the frozen model (``eval/lid``) with its
    held-out accuracy and confusion matrix (``eval/lid-eval``), and the preset's ``superb`` probes
    (``superb_overrides``: ``key=value``) on the model, with ``superb_baseline`` (the run's first
    iteration) on FBANK too (``eval/superb``). Returns the LID head URL ("" without a probe).
    ``cluster_overrides`` (``key=value``, the run's clustering ones) name the labelling method the
    report scores the sample with, as the labels were made. The report is committed last and reused
    when made from the same inputs and settings (``components._reuse``)."""
    from components._common import figures, json_table, log_metrics, mhubert, png_html, write_artifact_json
    from components._probes import superb_settings
    from components._reuse import decide_derived, eval_settings
    from mhubert.artifacts import RunLayout

    it = RunLayout(output_root).iteration(iteration)
    ev, sample = it.eval, it.clustering.sample
    index_uri = init_index or it.clustering.index.index_url
    scored = sample.is_committed() and not init_index
    settings, inputs = eval_settings(manifest_uri, labels_uri, model_uri, index_uri,
                                     sample.url if scored else None, preset, lid_probe, lid_overrides,
                                     cluster_overrides)
    settings["superb"] = superb_settings(preset, list(superb_overrides)).settings()
    settings["superb_baseline"] = bool(superb_baseline)
    compute = decide_derived(ev, settings, inputs, on_change, [ev.lid] if lid_probe else []) == "compute"
    page = f"<h3>Iteration {iteration}: pseudo-label quality</h3>"
    if scored:
        if compute:
            from mhubert.clustering.cli import stage_config
            from mhubert.clustering.quality import report as quality_report

            method = stage_config(preset, None, list(cluster_overrides)).label_method
            q = quality_report(ev.url, index_uri, sample.url, manifest_uri, labels=labels_uri,
                               label_method=method)
        else:
            q = ev.read_json(ev.QUALITY)
        flat = {k: v for k, v in q.items() if not isinstance(v, dict)}
        flat.update({f"language_{k}": v for k, v in (q.get("language") or {}).items()})
        flat.update({f"reference_{k}": v for k, v in (q.get("reference") or {}).items()})
        flat.update({f"unit_lid_{k}": v for k, v in (q.get("unit_lid") or {}).items() if v is not None})
        log_metrics(quality, flat)
        page += json_table(flat)
        try:
            page += png_html("Cluster sizes (clustering sample)", ev.read_bytes(ev.SIZES_PLOT))
        except Exception:  # noqa: BLE001 (a report without its plot is still a report)
            pass
    else:  # a reused index has no sample here to score
        info = figures(it.labels)
        log_metrics(quality, info)
        page += f"<p>index reused ({index_uri}): no clustering sample to score</p>{json_table(info)}"
    lid_dir = ""
    if lid_probe:
        head = ev.lid
        lid_dir = head.url
        sets = [a for o in lid_overrides for a in ("--set", o)]
        force = ["--force"] if on_change in ("force", "resume") else []  # resume: a new model
        if compute:
            mhubert("lid", "train", "--model", model_uri, "--manifest", manifest_uri, "--out", head.url,
                    "--preset", preset, "--quiet", *sets, *force)
            mhubert("lid", "evaluate", "--model", model_uri, "--lid", head.url, "--manifest", manifest_uri,
                    "--out", ev.lid_eval_url, "--split", "valid", "--quiet")
        from mhubert import storage

        m = storage.read_json(storage.join(ev.lid_eval_url, "metrics.json"))
        log_metrics(lid_metrics, {"accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"),
                                  "utterances": m.get("num_utterances")})
        cm = m["confusion"]
        confusion.log_confusion_matrix(list(cm["labels"]), [[int(v) for v in row] for row in cm["matrix"]])
        try:
            png = storage.read_bytes(storage.join(ev.lid_eval_url, "confusion_matrix.png"))
            page += png_html("LID probe: confusion matrix", png)
        except Exception:  # noqa: BLE001
            pass
    from components._probes import superb_probes

    page += superb_probes(model_uri, manifest_uri, ev.superb_url, preset, superb_overrides, superb_baseline,
                          probes, probe_confusion, compute=compute)
    if compute:  # last: the report's marker, with what made it
        ev.commit({"iteration": iteration, "quality": scored, "lid_probe": bool(lid_probe)},
                  settings=settings, inputs=inputs)
    write_artifact_json(lid_metrics)  # also without a probe: every output artifact has a file
    write_artifact_json(confusion)
    write_artifact_json(probes)
    write_artifact_json(probe_confusion)
    with open(report.path, "w") as f:
        f.write(f"<html><body>{page}</body></html>")
    return lid_dir
