"""Stage 6: export the final model as a transformers directory and register it for serving."""

from kfp import dsl
from kfp.dsl import Model, Output

from components import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def publish(model_uri: str, output_root: str, iteration: int, served: Output[Model],
            lid_uri: str = "") -> str:
    """Export ``model_uri`` (trainer checkpoint or transformers dir) to ``<output_root>/serving/model``
    (``mhubert model export``), check that transformers loads it, copy the LID head to
    ``serving/lid`` and write ``serving/registry.json`` (what ``mhubert serve`` is pointed at) last.
    Returns the served model URL."""
    import datetime

    from components._common import mhubert
    from mhubert import storage

    serving = storage.join(output_root, "serving")
    dest = storage.join(serving, "model")
    mhubert("model", "export", "--checkpoint", model_uri, "--out", dest)
    try:  # the served artifact must load in stock transformers
        import tempfile

        from transformers import HubertModel

        with tempfile.TemporaryDirectory() as tmp:
            fs, path = storage.get_fs(dest)
            fs.get(path.rstrip("/") + "/", tmp + "/", recursive=True)
            HubertModel.from_pretrained(tmp)
    except ImportError:
        print("transformers is not installed: skipped the load check", flush=True)
    lid_dest = ""
    if lid_uri:
        lid_dest = storage.join(serving, "lid")
        for name in ("head.pt", "labels.json"):
            data = storage.read_bytes(storage.join(lid_uri, name))
            storage.atomic_write(storage.join(lid_dest, name), data)
        storage.write_marker(lid_dest, {"source": lid_uri})
    storage.atomic_write_json(storage.join(serving, "registry.json"), {
        "model": dest, "lid": lid_dest or None, "source": model_uri, "iteration": iteration,
        "published": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    served.metadata.update({"uri": dest, "iteration": iteration, "framework": "transformers/hubert"})
    with open(served.path, "w") as f:
        f.write(dest + "\n")
    print(f"serving: mhubert serve --model {dest}" + (f" --lid {lid_dest}" if lid_dest else ""), flush=True)
    return dest
