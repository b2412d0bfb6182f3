// The reference for video_pipelines.net.javascript: reads {"bits": [16 hex digits of a float64, ...], "texts": [JSON, ...]}
// on stdin; writes {"numbers": JSON.stringify(those doubles), "texts": [JSON.stringify(JSON.parse(text)), ...]}.
const chunks = [];
process.stdin.on("data", (chunk) => chunks.push(chunk));
process.stdin.on("end", () => {
  const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const view = new DataView(new ArrayBuffer(8));
  const numbers = input.bits.map((hex) => {
    view.setBigUint64(0, BigInt(`0x${hex}`));
    return view.getFloat64(0);
  });
  const texts = input.texts.map((text) => JSON.stringify(JSON.parse(text)));
  process.stdout.write(JSON.stringify({ numbers: JSON.stringify(numbers), texts }));
});
