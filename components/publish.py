"""Stage 6: export the final model as a transformers directory and register it for serving."""

from kfp import dsl
from kfp.dsl import Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def publish(model_uri: str, output_root: str, iteration: int, served: Output[Model],
            lid_uri: str = "") -> str:
    """Export ``model_uri`` (trainer checkpoint or transformers dir) into the run's
    :class:`mhubert.artifacts.ServingBundle` (``mhubert model export``), check that transformers
    loads it, copy the LID head beside it and commit the bundle with ``registry.json`` (what
    ``mhubert serve`` is pointed at). Returns the served model URL."""
    import datetime

    from components._common import mhubert, write_uri
    from mhubert import storage
    from mhubert.artifacts import LidHead, RunLayout

    bundle = RunLayout(output_root).serving
    dest = bundle.model.url
    mhubert("model", "export", "--checkpoint", model_uri, "--out", dest)
    import tempfile

    from transformers import HubertModel

    with tempfile.TemporaryDirectory() as tmp:  # the served artifact must load in stock transformers
        fs, path = storage.get_fs(dest)
        fs.get(path.rstrip("/") + "/", tmp + "/", recursive=True)
        HubertModel.from_pretrained(tmp)
    lid_dest = ""
    if lid_uri:
        src, head = LidHead(lid_uri), bundle.lid
        for name in (head.HEAD, head.LABELS):
            head.write_bytes(name, src.read_bytes(name))
        head.commit({"source": lid_uri})
        lid_dest = head.url
    registry = {"model": dest, "lid": lid_dest or None, "source": model_uri, "iteration": iteration,
                "published": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    bundle.write_json(bundle.REGISTRY, registry)
    bundle.commit({k: v for k, v in registry.items() if k != "published"})
    write_uri(served, dest, iteration=iteration, framework="transformers/hubert")
    print(f"serving: mhubert serve --model {dest}" + (f" --lid {lid_dest}" if lid_dest else ""), flush=True)
    return dest
