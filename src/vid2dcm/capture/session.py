"""A recording session: N live sources, one procedure -> one study, one series per source.

The object a command line or a gateway drives: start(), trigger() (after pre-record),
snapshot(), stop(), state (bytes, duration, frames, reconnects per source), then finalize().
Everything it needs later is in folder/session.json, so a crashed session can be finalised
by `vid2dcm record --recover DIR`.

Common time base (why the Acquisition DateTimes of two cameras can be compared): each piece
records the Unix time of its first frame, taken from the sender's clock where the protocol
carries one (RTSP: RTCP Sender Reports -> start_time_realtime), else from the receiver's
clock: the earliest arrival of any packet relative to the media clock (so buffering by the
demuxer never makes a source look late) minus the source's configured latency. HLS uses
EXT-X-PROGRAM-DATE-TIME when the starting segment is certain (capture/hls.py).
The Video IODs have no Frame of Reference, hence no Synchronization Module (PS3.3 C.7.4.2):
the method is reported in the sync report, not in the header.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vid2dcm.capture.finalize import MANIFEST, FinalizeResult, finalize
from vid2dcm.capture.pieces import SessionManifest, SourceRecord, write_json
from vid2dcm.capture.pushed import PushedRecorder
from vid2dcm.capture.recorder import LiveState, Recorder, RecorderSettings
from vid2dcm.capture.sources import SourceSpec
from vid2dcm.core.errors import OutputError, UsageError
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.metadata import Metadata
from vid2dcm.core.uids import UidSource


@dataclass(frozen=True)
class SessionState:
    started: datetime | None
    elapsed_s: float
    sources: tuple[LiveState, ...]
    stop_reason: str | None

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.sources)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.sources)


class RecordingSession:
    def __init__(self, sources: list[SourceSpec], folder: Path, metadata: Metadata, *,
                 settings: RecorderSettings | None = None, sop: SopChoice = SopChoice.PHOTOGRAPHIC,
                 armed: bool = False, free_space: Callable[[Path], int] | None = None,
                 pushed: bool = False, on_stop: Callable[[], None] | None = None) -> None:
        """pushed: the sources' media is pushed in (WebRTC): one PushedRecorder per source,
        fed by the caller through `recorders`; on_stop runs when they are stopped."""
        if not sources:
            raise UsageError("record needs at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise UsageError("two sources have the same name: name them NAME=URL")
        if (folder / MANIFEST).exists():
            raise OutputError(f"{folder} already holds a recording (finalise it with "
                              "--recover, or choose another folder)")
        self.folder = folder
        self.metadata = metadata
        self.sop = sop
        self.settings = settings or RecorderSettings()
        uids = UidSource(metadata.uid_root, metadata.uid_seed)
        self.study_uid = metadata.study_instance_uid or uids.new("study")
        self.manifest = SessionManifest(
            started=datetime.now(), study_instance_uid=self.study_uid, metadata=metadata,
            sop=sop.value,
            sources=[SourceRecord(name=s.name, display=s.display,
                                  series_instance_uid=uids.new(f"series-{s.name}"),
                                  series_number=metadata.series_number + n,
                                  latency_s=s.latency_s)
                     for n, s in enumerate(sources)])
        self.recorders: list[Recorder | PushedRecorder] = [
            PushedRecorder(s, folder / s.name, self.settings, on_stop=on_stop,
                           free_space=free_space) if pushed else
            Recorder(s, folder / s.name, self.settings, armed=armed, free_space=free_space)
            for s in sources]
        self.armed = armed
        """Waiting for trigger() (pre-record): --duration counts from the trigger."""
        self._started: float | None = None
        self._done = threading.Event()

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / MANIFEST, self.manifest)
        self._started = time.monotonic()
        for r in self.recorders:
            r.start()

    def trigger(self) -> None:
        self.armed = False
        for r in self.recorders:
            r.trigger()

    def snapshot(self, source: str | None = None) -> None:
        for r in self.recorders:
            if source is None or r.spec.name == source:
                r.snapshot()

    @property
    def state(self) -> SessionState:
        states = tuple(r.state for r in self.recorders)
        reason = next((s.stop_reason for s in states if s.stop_reason), None)
        return SessionState(self.manifest.started if self._started else None,
                            time.monotonic() - self._started if self._started else 0.0,
                            states, reason)

    def should_stop(self) -> str | None:
        """A recorder that stopped on its own (disk guard) stops the whole session."""
        for r in self.recorders:
            if r.stopping and r.state.stop_reason:
                return r.state.stop_reason
        return None

    def stop(self, reason: str = "stopped", timeout: float = 30.0) -> None:
        for r in self.recorders:
            r.stop(reason)
        for r in self.recorders:
            r.join(timeout)
        self.manifest.stopped = datetime.now()
        self.manifest.stop_reason = self.should_stop() or reason
        write_json(self.folder / MANIFEST, self.manifest)
        self._done.set()

    def finalize(self, out_dir: Path, overwrite: bool = False) -> FinalizeResult:
        return finalize(self.folder, out_dir, overwrite=overwrite)
