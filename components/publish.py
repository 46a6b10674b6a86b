"""Stage 6: export the final model as a transformers directory, fit its units index, and register
both for serving."""

from kfp import dsl
from kfp.dsl import Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def publish(model_uri: str, output_root: str, iteration: int, served: Output[Model],
            lid_uri: str = "", manifest_uri: str = "", preset: str = "base", units_layer: int = -1,
            units_clusters: int = 0,
            cluster_overrides: list[str] = [],  # noqa: B006 (KFP needs a literal default)
            on_change: str = "stop") -> str:
    """Export ``model_uri`` (trainer checkpoint or transformers dir) into the run's
    :class:`mhubert.artifacts.ServingBundle` (``mhubert model export``), check that transformers
    loads it, copy the LID head beside it, fit the units index on the SERVED model's features and
    commit the bundle with ``registry.json`` (what ``mhubert serve`` is pointed at). Returns the
    served model URL.

    Units: ``mhubert cluster sample`` + ``fit`` on layer ``units_layer`` (-1: the preset's
    last-iteration clustering layer) of the exported model, ``units_clusters`` clusters (0: that
    iteration's K), over ``manifest_uri`` (default: the run's manifest), into ``serving/units/``.
    They run with ``--force``: the index follows the served model, so one made the same way (same
    weights, layer and options) is reused and any other is refit. The registry's ``units`` record
    (``index``, ``layer``, ``model``, ``model_digest``) is what the service checks the index against.

    A bundle committed from the same model, LID head, manifest and options is reused as it is
    (``components._reuse``); one made otherwise stops under ``on_change="stop"``.
    """
    import datetime
    import tempfile

    from transformers import HubertModel

    from components._common import mhubert, write_uri
    from components._reuse import decide_derived, publish_settings
    from mhubert import storage
    from mhubert.artifacts import LidHead, RunLayout
    from mhubert.config import iteration_schedule
    from mhubert.errors import BadInput
    from mhubert.model import load_model, model_digest

    run = RunLayout(output_root)
    bundle = run.serving
    dest = bundle.model.url
    last = iteration_schedule(preset)[-1]
    layer = units_layer if units_layer >= 0 else int(last["layer"])
    num_clusters = units_clusters if units_clusters > 0 else int(last["num_clusters"])
    manifest = manifest_uri or run.corpus.manifest_url
    settings, inputs = publish_settings(model_uri, lid_uri, manifest, preset, iteration, layer, num_clusters,
                                        cluster_overrides)
    units = bundle.units_index
    parts = [bundle.model, units, *([bundle.lid] if lid_uri else [])]
    if decide_derived(bundle, settings, inputs, on_change, parts) == "reuse":
        write_uri(served, dest, iteration=iteration, framework="transformers/hubert", units_layer=layer)
        print(f"serving: mhubert serve --model {bundle.url}", flush=True)
        return dest
    if bundle.is_committed():
        bundle.uncommit()  # rewritten in place below; committed again last
    mhubert("model", "export", "--checkpoint", model_uri, "--out", dest)
    with tempfile.TemporaryDirectory() as tmp:  # the served artifact must load in stock transformers
        fs, path = storage.get_fs(dest)
        fs.get(path.rstrip("/") + "/", tmp + "/", recursive=True)
        HubertModel.from_pretrained(tmp)
    lid_dest = ""
    if lid_uri:
        src, head = LidHead(lid_uri), bundle.lid
        if head.is_committed():
            head.uncommit()
        for name in (head.HEAD, head.LABELS):
            head.write_bytes(name, src.read_bytes(name))
        head.commit({"source": lid_uri})
        lid_dest = head.url

    model = load_model(dest)
    if not 0 <= layer <= model.cfg.num_layers:
        raise BadInput(f"units_layer {layer} is out of range: the served model has hidden states "
                       f"0..{model.cfg.num_layers}")
    sets = [a for o in cluster_overrides for a in ("--set", o)]
    opts = ["--preset", preset, "--num-clusters", num_clusters, "--quiet", *sets, "--force"]
    mhubert("cluster", "sample", "--manifest", manifest, "--out", units.url,
            "--features", "hubert", "--model", dest, "--layer", layer, *opts)
    mhubert("cluster", "fit", "--out", units.url, *opts)
    units_record = {"index": units.url, "layer": layer, "model": dest, "model_digest": model_digest(model),
                    "num_clusters": num_clusters}

    registry = {"model": dest, "lid": lid_dest or None, "units": units_record, "source": model_uri,
                "iteration": iteration,
                "published": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    bundle.write_json(bundle.REGISTRY, registry)
    bundle.commit({**{key: v for key, v in registry.items() if key != "published"},
                   "units_fingerprint": units.fingerprint}, settings=settings, inputs=inputs)
    write_uri(served, dest, iteration=iteration, framework="transformers/hubert", units_layer=layer)
    print(f"serving: mhubert serve --model {bundle.url}   (or --model {dest}"
          + (f" --lid {lid_dest}" if lid_dest else "") + f" --index {units.url} --units-layer {layer})",
          flush=True)
    return dest
