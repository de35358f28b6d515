"""``conceptlens backbone``: list, inspect and try loading backbones."""

from __future__ import annotations

import json
import time

import click

from conceptlens._cli_options import download_option, weights_option
from conceptlens.synthderm import _cli_lit

__all__ = ["backbone"]


@click.group(name="backbone")
def backbone() -> None:
    """List, inspect and load vision-language backbones."""


@backbone.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """List the registered backbones."""
    from conceptlens.backbones._registry import get_backbone_config, list_backbones

    configs = [get_backbone_config(n) for n in list_backbones()]
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in configs], indent=2))
        return
    width = max(len(c.name) for c in configs)
    for c in configs:
        click.echo(f"{c.name:<{width}}  {c.image_size:>4}px  {c.model}  ({c.modality})")


@backbone.command(name="show")
@click.argument("name")
def show_cmd(name: str) -> None:
    """Show the config of backbone NAME (JSON)."""
    from conceptlens.backbones._registry import get_backbone_config

    click.echo(json.dumps(get_backbone_config(name).to_dict(), indent=2))


@backbone.command(name="check")
@click.argument("name")
@click.option("--device", default=None, help="torch device (default: cuda > mps > cpu).")
@weights_option
@download_option
def check_cmd(name: str, device: str | None, weights: str | None, download: bool) -> None:
    """Try loading NAME (registry name, checkpoint, local-dir: or hf-hub: id).

    Without --download nothing touches the network: a hub backbone whose weights are not
    in the local Hugging Face cache fails at once with the steps that make it available.
    """
    from conceptlens.backbones._backbone import load_backbone

    t0 = time.perf_counter()
    bb = load_backbone(name, device=device, weights=weights, download=download)
    emb = bb.encode_text(["a test prompt"])
    click.echo(
        f"ok: {bb.name} loaded in {time.perf_counter() - t0:.1f} s on {bb.device} "
        f"({bb.precision}); embed_dim {emb.shape[1]}, image_size {bb.image_size}; "
        f"fingerprint {bb.fingerprint}"
    )


# synthderm-lit training / evaluation commands
for _cmd in (
    _cli_lit.train_synthderm_lit,
    _cli_lit.refit_synthderm_lit,
    _cli_lit.evaluate_synthderm_lit,
):
    backbone.add_command(_cmd)
