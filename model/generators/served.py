"""The generator that serves, the adapter merged into it, and switching adapters live.

At start-up the configured adapter (prepare.adapter) is merged in; one that cannot be
found or does not fit the base is logged, kept in `refused`, and the base model serves:
a bad adapter must not take the server down. A switch builds and warms the new
generator beside the serving one and swaps it in only when it is ready (GeneratorSlot:
requests already running finish on the old one), so a refused switch changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from lectern.errors import (
    AdapterMismatchError,
    AdapterNotFoundError,
    LecternError,
    MissingExtraError,
    NotReadyError,
)
from lectern.protocols import Generator, Message
from lectern.settings import Settings
from lectern.types import Usage
from model import prepare
from model.generators.adapters import AdapterInfo, available
from model.generators.slot import GeneratorSlot

log = logging.getLogger(__name__)


class ServedGenerator:
    """`build(settings)` makes a generator (not warmed) for settings naming an adapter."""

    def __init__(
        self,
        settings: Settings,
        build: Callable[[Settings], Generator],
        generator: Generator | None = None,
    ) -> None:
        self.settings = settings
        self._build = build
        self._slot = GeneratorSlot(generator)  # a handed-in one serves as it is
        self._ready = False
        self._lock = threading.Lock()  # one load or switch at a time
        self._adapter: Path | None = None
        self.refused: str | None = None  # why the configured adapter is not serving
        self._configured: Path | None = None
        self._configured_error: LecternError | None = None
        self._configured_known = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def current(self) -> Generator | None:
        return self._slot.current

    def require(self) -> Generator:
        """The serving generator; NotReadyError before warm_up() has loaded it."""
        generator = self._slot.current
        if not self._ready or generator is None:
            raise NotReadyError("generator used before warm_up_generator()")
        return generator

    @property
    def adapter(self) -> Path | None:
        """The folder of the adapter merged into the serving generator; None: the base."""
        return self._adapter

    def warm_up(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            generator = self._slot.current
            if generator is None:
                generator = self._start()
            else:
                generator.warm_up()
            self._slot.swap(generator)
            self._ready = True

    def _start(self) -> Generator:
        """The configured generator, warmed; the base model when its adapter is refused."""
        try:
            adapter = self._configured_adapter()
        except LecternError as exc:  # named but not found, a wrong checksum
            return self._refuse(exc)
        try:
            generator = self._warmed(self.settings)
        except (AdapterMismatchError, MissingExtraError) as exc:
            if adapter is None:  # the base model itself cannot load: nothing to fall back to
                raise
            return self._refuse(exc)
        self._adapter = adapter
        return generator

    def _refuse(self, exc: Exception) -> Generator:
        log.error(
            "the generator adapter %s is refused, serving the base model instead: %s",
            self.settings.models.adapter or "shipped", exc,
        )
        self.refused = str(exc)
        return self._warmed(prepare.with_adapter(self.settings, None))

    def _warmed(self, settings: Settings) -> Generator:
        generator = self._build(settings)
        try:
            generator.warm_up()
        except BaseException:
            generator.close()  # a half-loaded scheduler must not linger
            raise
        return generator

    def _configured_adapter(self) -> Path | None:
        """prepare.adapter(settings), resolved once (a hub id is not looked up again on
        every listing); when it could not be resolved, that error, raised each time."""
        if not self._configured_known:
            try:
                self._configured = prepare.adapter(self.settings)
            except LecternError as exc:
                self._configured_error = exc
            self._configured_known = True
        if self._configured_error is not None:
            raise self._configured_error
        return self._configured

    def adapters(self) -> list[AdapterInfo]:
        try:
            configured = self._configured_adapter()
        except LecternError:  # not listed: the start-up refusal says why
            configured = None
        return available(self.settings, self._adapter, configured)

    def use(self, name: str | None) -> AdapterInfo | None:
        """Serve the adapter listed as `name` (None: the base model); the active one after.

        AdapterNotFoundError for a name not listed; AdapterMismatchError (or any load
        failure) leaves the serving generator as it was.
        """
        listed = self.adapters()
        chosen = next((a for a in listed if a.name == name), None)
        if name is not None and chosen is None:
            raise AdapterNotFoundError(name, [a.name for a in listed])
        folder = None if chosen is None else chosen.path
        with self._lock:
            if not (self._ready and _same(folder, self._adapter)):
                generator = self._warmed(prepare.with_adapter(self.settings, folder))
                self._slot.swap(generator)
                self._adapter, self.refused, self._ready = folder, None, True
                log.info("generator adapter: %s", name or "none (the base model)")
        return next((a for a in self.adapters() if a.active), None)

    def generate(self, messages: Sequence[Message]) -> str:
        return self._slot.generate(messages)

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        return self._slot.stream(messages)

    def samples(self, messages: Sequence[Message], n: int) -> list[str]:
        return self._slot.samples(messages, n)

    def usage(self, messages: Sequence[Message], reply: str) -> Usage | None:
        """The tokens of `messages` as the serving generator reads them and of `reply`,
        counted with its tokenizer; None for a generator without one (not every backend
        or test double can count, and a count made up by another tokenizer would mislead).
        """
        generator = self._slot.current
        count_prompt = getattr(generator, "count_prompt_tokens", None)
        count = getattr(generator, "count_tokens", None)
        if count_prompt is None or count is None:
            return None
        return Usage(count_prompt(messages), count(reply))

    def close(self) -> None:
        self._slot.close()


def _same(a: Path | None, b: Path | None) -> bool:
    return a is b or (a is not None and b is not None and a.resolve() == b.resolve())
