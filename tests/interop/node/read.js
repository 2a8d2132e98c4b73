// Reads each DICOM file named on the command line with cornerstone's dicom-parser and with
// dcmjs, and prints one JSON line per file and parser: ok, or the parser's own message.
"use strict";
const fs = require("fs");
const dicomParser = require("dicom-parser");
const dcmjs = require("dcmjs");

dcmjs.log.setLevel("silent");

function withDicomParser(bytes) {
  const ds = dicomParser.parseDicom(bytes);
  const px = ds.elements.x7fe00010;
  const out = {
    sop: ds.string("x00080016"),
    ts: ds.string("x00020010"),
    frames: ds.intString("x00280008"),
    rows: ds.uint16("x00280010"),
  };
  if (px && px.encapsulatedPixelData) {
    out.fragments = px.fragments.length;
    out.fragment_bytes = px.fragments.reduce((n, f) => n + f.length, 0);
  } else if (px) {
    out.native_bytes = px.length;
  }
  return out;
}

function withDcmjs(bytes) {
  const data = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(
    bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(data.dict);
  const px = ds.PixelData;
  return {
    sop: ds.SOPClassUID,
    ts: data.meta["00020010"].Value[0],
    frames: ds.NumberOfFrames,
    rows: ds.Rows,
    fragments: Array.isArray(px) ? px.length : null,
  };
}

for (const path of process.argv.slice(2)) {
  const bytes = new Uint8Array(fs.readFileSync(path));
  for (const [name, fn] of [["dicom-parser", withDicomParser], ["dcmjs", withDcmjs]]) {
    let line;
    try {
      line = { path, parser: name, ok: true, ...fn(bytes) };
    } catch (e) {
      line = { path, parser: name, ok: false, error: String((e && (e.exception || e.message)) || e) };
    }
    console.log(JSON.stringify(line));
  }
}
