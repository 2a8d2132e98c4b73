"""C-STORE written straight to the socket (delivery/transports/dimse.py `_stream_store`):
DCMTK storescp, at its smallest and largest maximum PDU length, receives exactly the data set
we sent, as a file that pydicom, dcmdump and dciodvfy read back and whose video decodes; the
PDUs on the wire never exceed what the peer declared (PS3.8 9.3.4), checked by storescp itself
and by counting them."""

from __future__ import annotations

import socket
from pathlib import Path

import pydicom
import pytest

from conftest import MakeClip
from dcmtk_peers import running_storescp
from readback import read_back
from vid2dcm.core.metadata import Metadata
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.send import deliver
from vid2dcm.delivery.transports import dimse
from vid2dcm.pipeline import convert
from vid2dcm.producing.synth import AudioSpec, ClipSpec

pytestmark = [pytest.mark.integration, pytest.mark.needs_dcmtk]


@pytest.fixture(scope="module")
def instance(make_clip: MakeClip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clip = make_clip("stream.mp4", ClipSpec(width=320, height=240, frames=45, noise=True,
                                            audio=AudioSpec(), options={"preset": "ultrafast",
                                                                        "profile": "high"}))
    out = tmp_path_factory.mktemp("stream") / "stream.dcm"
    result = convert(clip, out, metadata=Metadata(patient_id="STREAM1"))
    return result.files[0].path


def _data_set(path: Path) -> bytes:
    """The encoded data set: everything after the file meta information."""
    _meta, offset = dimse.split_dataset(path)
    return path.read_bytes()[offset:]


@pytest.mark.parametrize("max_pdu", [4096, 131072])
def test_streamed_store_arrives_identical(instance: Path, tmp_path: Path, max_pdu: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = socket.socket.sendmsg

    def counting(sock: socket.socket, buffers: list[bytes], *rest: object) -> int:
        sizes.extend(len(b) for b in buffers[0::2])  # headers: 12 bytes each
        for header in buffers[0::2]:
            length = int.from_bytes(bytes(header[2:6]), "big")
            assert length <= max_pdu, f"PDU of {length} bytes, peer allows {max_pdu}"
        return real(sock, buffers, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "sendmsg", counting)
    with running_storescp(tmp_path / "in", "--max-pdu", str(max_pdu)) as peer:
        receipts = deliver([instance], Destination(ae_title=peer.aet, host="127.0.0.1",
                                                   port=peer.port, retries=0))
        assert [r.ok for r in receipts] == [True], receipts
        [received] = peer.received()
    expected = _data_set(instance)
    assert _data_set(received) == expected
    assert sizes and set(sizes) == {12}
    chunk = max_pdu - 6
    assert len(sizes) == -(-len(expected) // chunk)  # one PDU per chunk, none wasted
    sent = pydicom.dcmread(instance, stop_before_pixels=True)
    got = pydicom.dcmread(received, stop_before_pixels=True)
    assert got.SOPInstanceUID == sent.SOPInstanceUID
    assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    read_back(received, tmp_path)


def test_a_file_shorter_than_its_header_says_is_refused(instance: Path, tmp_path: Path
                                                        ) -> None:
    """The length is taken before sending; a file that shrinks meanwhile must not end the
    message early as if it were complete."""
    class Short:
        name = "short.dcm"

        def readinto(self, view: memoryview) -> int:
            return 0

    with pytest.raises(dimse.DeliveryError, match="ended 1000 bytes early"):
        dimse._write_file(socket.socket(), 1, 16384, Short(), 1000)  # type: ignore[arg-type]
