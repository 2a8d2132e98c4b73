"""The mistakes a user makes, as a table (issue 18): command line, metadata file, settings file
(service.toml), destinations file. Each must give exactly one line on stderr naming the option
or key (and the bad value, unless it is patient data) with its documented exit code, no
traceback, nothing written in the working folder and the input unchanged. Every case's
`documented` phrase must appear in docs/troubleshooting.md under its exit code, so the
troubleshooting page cannot drift from what the code says.

The table runs in-process through vid2dcm.apps.cli.main (the console script's own function) for
speed; a sample of it runs again as real subprocesses at the end."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vid2dcm.apps.cli import main
from vid2dcm.apps.cli.codes import EXIT_CODES
from vid2dcm.producing.synth import ClipSpec, synthesize

TROUBLESHOOTING = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
HIGH = {"preset": "superfast", "profile": "high"}
SECRET = "PID-SECRET"


@dataclass(frozen=True)
class Mistake:
    id: str
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    """Phrases the error line must hold."""
    documented: str
    """The phrase docs/troubleshooting.md holds under this exit code."""
    files: dict[str, str] = field(default_factory=dict)
    """Files to create in the working folder first (name -> text)."""
    never: tuple[str, ...] = ()
    """Phrases the output must not hold (patient values)."""
    json: bool = False


def M(id: str, args: str | tuple[str, ...], code: int, says: str | tuple[str, ...],
      documented: str, files: dict[str, str] | None = None, never: tuple[str, ...] = (),
      json: bool = False) -> Mistake:
    return Mistake(id, tuple(args.split()) if isinstance(args, str) else args, code,
                   (says,) if isinstance(says, str) else says, documented, files or {}, never,
                   json)


def toml(text: str) -> str:
    return text.strip() + "\n"


PACS = toml("""
[destinations.pacs]
ae_title = "PACS"
host = "127.0.0.1"
port = 104
""")

MISTAKES: list[Mistake] = [
    # --- the command line ----------------------------------------------------------------------
    M("unknown-option", "convert clip.mp4 --no-such-option", 2, "No such option",
      "No such option"),
    M("unknown-command", "frobnicate", 2, "No such command 'frobnicate'", "No such command"),
    M("bad-choice", "convert clip.mp4 --sop xray", 2, ("--sop", "'xray' is not one of"),
      "is not one of"),
    M("missing-input", "convert", 2, "Missing argument", "Missing argument"),
    M("jobs-zero", "convert clip.mp4 --jobs 0", 2, "--jobs", "Invalid value for"),
    M("max-size-shape", "convert clip.mp4 --max-size 12", 2, ("--max-size", "'12'", "1920x1080"),
      "is not WIDTHxHEIGHT"),
    M("max-size-tiny", "convert clip.mp4 --max-size 8x8", 2, ("--max-size", "'8x8'"),
      "is not WIDTHxHEIGHT"),
    M("send-garbage", "convert clip.mp4 -o out.dcm --send pacs-somewhere", 2,
      ("--send", "'pacs-somewhere'", "PACS@10.0.0.5:104"), "is neither AE@HOST:PORT"),
    M("send-long-ae", "convert clip.mp4 -o out.dcm --send ABCDEFGHIJKLMNOPQ@127.0.0.1:104", 2,
      ("--send", "'ABCDEFGHIJKLMNOPQ'", "17 characters"), "an AE title at most 16"),
    M("send-bad-port", "convert clip.mp4 -o out.dcm --send PACS@127.0.0.1:99999", 2,
      ("--send", "'99999'", "1-65535"), "a port is 1-65535"),
    M("send-no-host", "convert clip.mp4 -o out.dcm --send PACS@:104", 2,
      ("--send", "HOST:PORT"), "needs HOST:PORT after @"),
    M("send-no-ae", "convert clip.mp4 -o out.dcm --send @127.0.0.1:104", 2,
      ("--send", "no AE title"), "has no AE title before @"),
    M("stow-not-http", "convert clip.mp4 -o out.dcm --stow ftp://pacs/x", 2,
      ("--stow", "'ftp://pacs/x'", "https://pacs/dicom-web"), "is not an http(s) URL"),
    M("worklist-no-accession", "convert clip.mp4 --worklist WL@127.0.0.1:104", 2,
      ("--worklist", "--accession"), "--worklist needs --accession"),
    M("study-uid", "convert clip.mp4 --study-uid 1.2.abc", 2,
      ("--study-uid", "study_instance_uid", "digits and dots"), "is not a valid DICOM UID"),
    M("uid-root", "convert clip.mp4 --uid-root abc", 2, ("--uid-root", "digits and dots"),
      "is not a valid UID root"),
    M("patient-id-backslash", ("convert", "clip.mp4", "--patient-id", SECRET + "\\2"), 2,
      ("--patient-id", "backslash"), "must not contain a backslash", never=(SECRET,)),
    M("accession-too-long", "convert clip.mp4 --accession A2345678901234567", 2,
      ("--accession", "16 characters"), "String should have at most"),
    M("output-is-input", "convert clip.mp4 -o clip.mp4 --overwrite", 2, "clip.mp4",
      "would overwrite the input"),
    M("missing-input-file", "convert nowhere.mp4", 3, "nowhere.mp4", "no such file"),
    M("output-folder-missing", "convert clip.mp4 -o nodir/x.dcm", 5, "does not exist",
      "does not exist"),
    M("output-exists", "convert clip.mp4 -o old.dcm", 5, "--overwrite", "--overwrite",
      files={"old.dcm": "keep me"}),
    M("echo-long-calling-ae", "echo PACS@127.0.0.1:104 --calling-aet ABCDEFGHIJKLMNOPQRS", 2,
      ("--calling-aet", "19 characters"), "an AE title at most 16"),
    M("echo-stow", "echo https://pacs/dicom-web", 2, "C-ECHO needs AE@HOST:PORT",
      "C-ECHO needs AE@HOST:PORT"),
    M("send-bad-to", "send clip.dcm --to somewhere", 2, ("--to", "'somewhere'"),
      "is neither AE@HOST:PORT", files={"clip.dcm": "x"}),
    M("send-missing-file", "send absent.dcm --to PACS@127.0.0.1:104", 3, "absent.dcm",
      "no such file"),
    M("send-retries", "send clip.dcm --to PACS@127.0.0.1:104 --retries 99", 2, "--retries",
      "Invalid value for", files={"clip.dcm": "x"}),
    M("worklist-date", "worklist --from WL@127.0.0.1:104 --date yesterday", 2,
      ("--date", "'yesterday'", "20240131"), "is not a day"),
    M("worklist-no-from", "worklist", 2, "--from", "Missing option"),
    M("token-nurse", "token --role nurse", 2,
      ("--role", "'nurse'", "'uploader', 'reviewer', 'admin'"), "is not one of"),
    M("extract-no-output", "extract clip.dcm", 2, "--output", "Missing option",
      files={"clip.dcm": "x"}),
    M("info-not-dicom", "info clip.mp4", 3, ("clip.mp4", "not a readable DICOM file"),
      "not a readable DICOM file"),
    M("serve-cert-missing", "serve --data gw --ssl-certfile nocert.pem --ssl-keyfile k.pem", 2,
      ("--ssl-certfile", "nocert.pem"), "--ssl-certfile: FILE does not exist",
      files={"k.pem": "x"}),
    M("serve-cert-alone", "serve --data gw --ssl-certfile c.pem", 2, "go together",
      "go together", files={"c.pem": "x"}),
    M("watch-not-a-folder", "watch clip.mp4 --once", 2, ("FOLDER", "not a folder"),
      "is not a folder"),
    M("json-error-object", "convert clip.mp4 --json --send nowhere", 2, "--send",
      "is neither AE@HOST:PORT", json=True),
    # --- issue 11: no delivery without a Patient ID (exit code 8) ------------------------------
    M("convert-send-unidentified", "convert clip.mp4 -o out.dcm --send PACS@127.0.0.1:104", 8,
      ("clip.mp4", "no Patient ID", "--allow-unidentified"), "no Patient ID to deliver with"),
    M("convert-stow-unidentified", "convert clip.mp4 -o out.dcm --stow http://127.0.0.1:9/x",
      8, ("clip.mp4", "no Patient ID"), "no Patient ID to deliver with", json=False),
    M("watch-to-unidentified", "watch drop --to PACS@127.0.0.1:104 --once", 8,
      ("drop", "no Patient ID"), "no Patient ID to deliver with", files={"drop/keep": "x"}),
    M("record-send-unidentified",
      "record lavfi:testsrc -o rec --duration 1 --send PACS@127.0.0.1:104", 8,
      ("rec", "no Patient ID"), "no Patient ID to deliver with"),
    M("unidentified-json", "convert clip.mp4 --json --send PACS@127.0.0.1:104", 8,
      "no Patient ID", "no Patient ID to deliver with", json=True),
    M("send-not-dicom", "send clip.dcm --to PACS@127.0.0.1:104", 3,
      ("clip.dcm", "not a DICOM file"), "not a DICOM file", files={"clip.dcm": "x"}),
    M("frame-rate", "convert clip.mp4 --frame-rate fast", 2,
      ("--frame-rate", "'fast'", "30000/1001"), "is not a frame rate"),
    M("stream-negative", "convert clip.mp4 --stream -1", 2, "--stream", "Invalid value for"),
    # --- convert --deidentify --------------------------------------------------------------------
    M("deidentify-profile", "convert clip.mp4 -o anon --deidentify xray", 2,
      ("--deidentify", "'xray'", "basic"), "is not a profile"),
    M("deidentify-dcm-output", "convert clip.mp4 -o anon.dcm --deidentify basic", 2,
      ("--deidentify", "-o FOLDER"), "--deidentify needs -o FOLDER"),
    M("deidentify-folder-input", "convert drop -o anon --deidentify basic", 2,
      ("--deidentify", "one file at a time"), "one file at a time", files={"drop/a.mp4": "x"}),
    # --- commands from other modules, on the one failure path ------------------------------------
    M("deid-sample-every", "deidentify clip.dcm -o anon --sample-every 0", 2,
      ("--sample-every", "not positive"), "is not positive", files={"clip.dcm": "x"}),
    M("deid-missing-file", "deidentify absent.dcm -o anon", 3, "absent.dcm", "no such file"),
    M("deid-bad-mask", "deidentify clip.dcm -o anon --mask 1,2", 2, ("--mask", "X,Y,W,H"),
      "X,Y,W,H[,START,END]", files={"clip.dcm": "x"}),
    M("deid-json-error", "deidentify absent.dcm -o anon --json", 3, "absent.dcm",
      "no such file", json=True),
    M("deid-no-output-left", "deidentify clip.dcm -o anon", 3, "clip.dcm",
      "not a DICOM", files={"clip.dcm": "x"}),
    M("record-no-source", "record -o rec", 2, "at least one source", "at least one source"),
    M("record-json-error", "record -o rec --json", 2, "at least one source",
      "at least one source", json=True),
    M("record-bad-size", "record lavfi:testsrc -o rec --min-free lots", 2,
      ("--min-free", "'lots'"), "is not a size"),
    M("media-no-dicom", "media disc absent.dcm", 3, "absent.dcm", "no such file"),
    M("orders-bad-date", "orders --data od --date yesterday", 2, "--date",
      "must be today or YYYYMMDD"),
    # --- the metadata file ---------------------------------------------------------------------
    M("metadata-missing", "convert clip.mp4 --metadata absent.json", 2,
      ("absent.json", "does not exist"), "metadata file FILE does not exist"),
    M("metadata-not-json", "convert clip.mp4 --metadata m.json", 2, "is not valid JSON",
      "is not valid JSON", files={"m.json": "{patient_id: 1"}),
    M("metadata-a-list", "convert clip.mp4 --metadata m.json", 2, "must hold a JSON object",
      "must hold a JSON object", files={"m.json": "[1, 2]"}),
    M("metadata-typo", "convert clip.mp4 --metadata m.json", 2,
      ("pateint_name", "did you mean patient_name"), "unknown key",
      files={"m.json": json.dumps({"pateint_name": "X^Y"})}),
    M("metadata-birth-date", "convert clip.mp4 --metadata m.json", 2,
      ("patient_birth_date", "19700131", "1970-01-31"), "is not a date",
      files={"m.json": json.dumps({"patient_birth_date": "31/01/1970"})},
      never=("31/01/1970",)),
    M("metadata-study-date", "convert clip.mp4 --metadata m.json", 2,
      ("study_date", "19700131", "1970-01-31"), "is not a date",
      files={"m.json": json.dumps({"study_date": "2024-13-01"})}, never=("2024-13-01",)),
    M("metadata-study-time", "convert clip.mp4 --metadata m.json", 2,
      ("study_time", "143000", "14:30:00"), "is not a time",
      files={"m.json": json.dumps({"study_time": "25:00"})}, never=("25:00",)),
    M("metadata-datetime", "convert clip.mp4 --metadata m.json", 2,
      ("acquisition_datetime", "20240131143000"), "is not a date and time",
      files={"m.json": json.dumps({"acquisition_datetime": "yesterday"})}),
    M("metadata-sex", "convert clip.mp4 --metadata m.json", 2,
      ("patient_sex", "'M', 'F' or 'O'"), "Input should be",
      files={"m.json": json.dumps({"patient_sex": "X"})}),
    M("metadata-series-number", "convert clip.mp4 --metadata m.json", 2,
      ("series_number", "valid integer"), "Input should be",
      files={"m.json": json.dumps({"series_number": "abc"})}),
    M("metadata-laterality", "convert clip.mp4 --metadata m.json", 2,
      ("image_laterality", "'R', 'L', 'U' or 'B'"), "Input should be",
      files={"m.json": json.dumps({"image_laterality": "Left"})}),
    M("metadata-region", "convert clip.mp4 --metadata m.json", 2,
      ("anatomic_region.meaning",), "Field required",
      files={"m.json": json.dumps({"anatomic_region": {"value": "1"}})}),
    # --- the settings file (service.toml) and the data folder --------------------------------
    M("settings-typo", "worker --data gw", 2, ("service.toml", "prot", "did you mean port"),
      "unknown key", files={"gw/service.toml": "[service]\nprot = 8080\n"}),
    M("settings-port-text", "serve --data gw", 2, ("service.toml", "port", "'x'"),
      "Input should be", files={"gw/service.toml": '[service]\nport = "x"\n'}),
    M("settings-port-range", "serve --data gw", 2, ("service.toml", "port", "70000"),
      "Input should be", files={"gw/service.toml": "[service]\nport = 70000\n"}),
    M("settings-not-toml", "gateway --data gw", 2, ("service.toml", "is not valid TOML"),
      "is not valid TOML", files={"gw/service.toml": "[service\nport = 1\n"}),
    M("settings-token-role", "serve --data gw", 2, ("tokens.0.role", "'nurse'"),
      "Input should be", files={"gw/service.toml": toml("""
[[service.tokens]]
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
role = "nurse"
""")}),
    M("settings-pasted-token-line", "serve --data gw", 2, ("service.toml", "not valid TOML"),
      "is not valid TOML", files={"gw/service.toml": "[service]\ntoken: abc\n"}),
    M("data-folder-is-a-file", "serve --data afile/gw", 7, ("afile/gw", "not writable"),
      "is not writable", files={"afile": "x"}),
    M("data-folder-newer-store", "serve --data gw", 7, ("jobs.sqlite", "another vid2dcm version"),
      "made by another vid2dcm version", files={"gw/newer-store": ""}),
    M("data-folder-damaged-store", "worker --data gw", 7, ("jobs.sqlite", "cannot be read"),
      "cannot be read", files={"gw/jobs.sqlite": "this is not a database" * 100}),
    M("port-in-use", "serve --data gw --port BUSY", 7, ("is in use", "--port", "PORT="),
      "is in use"),
    # --- the destinations file (--config) ------------------------------------------------------
    M("config-missing", "convert clip.mp4 --send pacs --config absent.toml", 2,
      ("--config", "absent.toml", "does not exist"), "config file FILE does not exist"),
    M("config-not-toml", "convert clip.mp4 --send pacs --config d.toml", 2,
      ("--config", "not valid TOML"), "is not valid TOML", files={"d.toml": "[destinations\n"}),
    M("config-not-a-table", "convert clip.mp4 --send pacs --config d.toml", 2,
      ("--config", "must be a table"), "must be a table", files={"d.toml": "destinations = 5\n"}),
    M("config-typo", "convert clip.mp4 --send pacs --config d.toml", 2,
      ("[destinations.pacs]", "ae_tittle", "did you mean ae_title"), "unknown key",
      files={"d.toml": PACS + 'ae_tittle = "X"\n'}),
    M("config-no-host", "convert clip.mp4 --send pacs --config d.toml", 2,
      ("[destinations.pacs]", "ae_title, host and port"), "needs ae_title, host and port",
      files={"d.toml": '[destinations.pacs]\nae_title = "PACS"\n'}),
    M("config-long-calling-ae", "echo pacs --config d.toml", 2,
      ("calling_ae_title", "at most 16"), "String should have at most",
      files={"d.toml": PACS + 'calling_ae_title = "ABCDEFGHIJKLMNOPQ"\n'}),
    M("config-port-zero", "send clip.dcm --to pacs --config d.toml", 2,
      ("[destinations.pacs]", "port", "0"), "Input should be",
      files={"d.toml": PACS.replace("104", "0"), "clip.dcm": "x"}),
    M("config-unknown-name", "convert clip.mp4 --send archive --config d.toml", 2,
      ("--send", "'archive'", "names in d.toml: pacs"), "is neither AE@HOST:PORT",
      files={"d.toml": PACS}),
    M("config-stow-url", "send clip.dcm --to cloud --config d.toml", 2,
      ("[destinations.cloud]", "http(s) url"), "needs an http(s) url",
      files={"d.toml": '[destinations.cloud]\nkind = "stow"\nurl = "pacs/dicom-web"\n',
             "clip.dcm": "x"}),
]


def test_the_table_is_big_enough() -> None:
    assert len(MISTAKES) >= 40
    assert len({m.id for m in MISTAKES}) == len(MISTAKES)
    kinds = {"metadata": 0, "settings": 0, "config": 0}
    for m in MISTAKES:
        for k in kinds:
            kinds[k] += m.id.startswith(k)
    assert min(kinds.values()) >= 5, kinds


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("mistakes") / "clip.mp4",
                      ClipSpec(width=64, height=48, frames=5, options=HIGH))


def _newer_store(path: Path) -> None:
    """A jobs.sqlite as a newer version made it: a schema revision this one does not know (an
    older store is migrated on start: tests/gateway/test_store.py)."""
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL); "
                     "INSERT INTO alembic_version VALUES ('9999_from_the_future');")
    db.commit()
    db.close()


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(folder.rglob("*"))}


def _stage(mistake: Mistake, work: Path, clip: Path, busy: int) -> tuple[str, ...]:
    work.mkdir()
    (work / "clip.mp4").write_bytes(clip.read_bytes())
    for name, text in mistake.files.items():
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("newer-store"):
            _newer_store(target.parent / "jobs.sqlite")
        else:
            target.write_text(text)
    return tuple(a.replace("BUSY", str(busy)) for a in mistake.args)


def _check(mistake: Mistake, code: int, stdout: str, stderr: str) -> None:
    assert code == mistake.code, (code, stdout, stderr)
    assert "Traceback" not in stderr + stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vid2dcm: error: "), stderr
    for phrase in mistake.says:
        assert phrase in lines[0], (phrase, lines[0])
    for phrase in mistake.never:
        assert phrase not in stdout + stderr
    if mistake.json:
        report = json.loads(stdout)
        assert report["error"]["code"] == mistake.code
        assert report["error"]["message"] == lines[0].removeprefix("vid2dcm: error: ")
    else:
        assert stdout == "", stdout


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_mistake(mistake: Mistake, clip: Path, tmp_path: Path, busy_port: int,
                 capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    args = _stage(mistake, work, clip, busy_port)
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VID2DCM_DATA", raising=False)
    before = _snapshot(work)
    code = main(list(args))
    captured = capsys.readouterr()
    _check(mistake, code, captured.out, captured.err)
    assert _snapshot(work) == before, "the command left something behind or changed a file"
    assert not (tmp_path / "xdg").exists()


def _documented_sections() -> dict[int, str]:
    """docs/troubleshooting.md split at its '## Exit code N' headings."""
    text = TROUBLESHOOTING.read_text()
    parts = re.split(r"^## Exit code (\d+)\b.*$", text, flags=re.M)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_troubleshooting_has_every_exit_code_with_a_remedy() -> None:
    sections = _documented_sections()
    assert sorted(sections) == sorted(e.code for e in EXIT_CODES if e.code)
    for row in EXIT_CODES[1:]:
        assert "Remedy" in sections[row.code] or "remedy" in sections[row.code], row.code


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_troubleshooting_documents_the_message(mistake: Mistake) -> None:
    section = _documented_sections()[mistake.code]
    assert mistake.documented in section, (mistake.code, mistake.documented)


@pytest.mark.parametrize(("birth", "day", "hour", "moment"), [
    ("19700131", "20240215", "1430", "20240215143000"),
    ("1970-01-31", "2024-02-15", "14:30:00", "2024-02-15T14:30:00"),
])
def test_dicom_and_iso_dates_are_accepted(birth: str, day: str, hour: str, moment: str,
                                          clip: Path, tmp_path: Path) -> None:
    """The DICOM forms (DA, TM, DT) and the ISO forms give the same header."""
    from readback import read_back

    meta = tmp_path / "m.json"
    meta.write_text(json.dumps({"patient_birth_date": birth, "study_date": day,
                                "study_time": hour, "acquisition_datetime": moment}))
    out = tmp_path / "d.dcm"
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "convert", str(clip), "-o",
                           str(out), "--metadata", str(meta)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    ds = read_back(out, tmp_path).dataset
    assert (ds.PatientBirthDate, ds.StudyDate, ds.StudyTime) == ("19700131", "20240215",
                                                                 "143000")
    assert ds.AcquisitionDateTime.startswith("20240215143000")


SUBPROCESS_SAMPLE = ["send-long-ae", "metadata-birth-date", "settings-typo", "config-typo",
                     "port-in-use", "json-error-object", "token-nurse"]


@pytest.mark.parametrize("name", SUBPROCESS_SAMPLE)
def test_mistake_as_a_real_process(name: str, clip: Path, tmp_path: Path,
                                   busy_port: int) -> None:
    """The console script path: same line, same code, no traceback from the interpreter."""
    mistake = next(m for m in MISTAKES if m.id == name)
    work = tmp_path / "work"
    args = _stage(mistake, work, clip, busy_port)
    before = _snapshot(work)
    env = {k: v for k, v in __import__("os").environ.items() if k != "VID2DCM_DATA"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    _check(mistake, proc.returncode, proc.stdout, proc.stderr)
    assert _snapshot(work) == before
