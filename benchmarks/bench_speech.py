"""Benchmark the offline speech recogniser behind `addSubtitles({language: "en"})`.

Speaks one English paragraph (about 25 s) with each text-to-speech engine of the machine
(festival's HTS voice `cmu_us_slt_arctic_hts`, flite's `slt`, espeak-ng; `.ci/run` installs
them), puts it on a video as the pipeline's outputs carry it (AAC 48 kHz stereo in an MP4),
and transcribes it with the local recogniser (PocketSphinx, the US English model of its wheel).
Per engine it prints:

- seconds of speech transcribed per wall-clock second (the median of --repeat runs; the time
  covers extracting the audio with FFmpeg and decoding, as a node pays it), and
- the word error rate against the paragraph: (substitutions + deletions + insertions) / words.

Then it builds the cues of the festival transcription and prints them as SRT.

Run from the repository root: python benchmarks/bench_speech.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.speech import ENGINES, speak, word_error_rate
from video_pipelines.operations import generate_clip, replace_audio, to_srt
from video_pipelines.operations.ffmpeg import probe_audio
from video_pipelines.providers.local import transcribe_file
from video_pipelines.speech.cues import cues_from_words

PARAGRAPH = (
    "Welcome to the city at night. Today we show you how the new camera works when the light is low. "
    "First we walk along the river and look at the bridge. Then we stop at a small market where people "
    "buy fresh bread and coffee. The camera keeps the colors clear and the faces sharp. "
    "At the end of the evening we go back home and watch the video together. "
    "Thank you for watching, and see you next week."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="transcriptions per engine (median reported)")
    args = parser.parse_args()
    print(f"paragraph: {len(PARAGRAPH.split())} words\n")
    print(f"{'engine':<14}{'speech s':>10}{'wall s':>9}{'speech s / wall s':>20}{'WER':>7}  words heard")
    festival_words = None
    with tempfile.TemporaryDirectory(prefix="vp-bench-speech-") as tmp:
        work = Path(tmp)
        for engine, (program, _) in ENGINES.items():
            if shutil.which(program) is None:
                print(f"{engine:<14}  (not installed: {program})")
                continue
            voice = speak(PARAGRAPH, work / f"{engine}.wav", engine=engine)
            seconds = probe_audio(voice)
            clip, video = work / f"{engine}-clip.mp4", work / f"{engine}.mp4"
            # A clip as long as the speech (whole seconds): the time measured is that of speech, not of padding.
            generate_clip(clip, prompt="speech", width=320, height=180, duration=math.ceil(seconds), seed=1)
            replace_audio(clip, voice, video)
            walls = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                words = transcribe_file(video)
                walls.append(time.perf_counter() - started)
            wall = statistics.median(walls)
            heard = " ".join(word.text for word in words)
            wer = word_error_rate(PARAGRAPH, heard)
            print(f"{engine:<14}{seconds:>10.1f}{wall:>9.2f}{seconds / wall:>20.1f}{wer:>7.0%}  {len(words)}")
            if engine == "festival-hts":
                festival_words = words
    if festival_words is not None:
        print("\ncues of the festival-hts transcription:\n")
        print(to_srt(cues_from_words(festival_words)))


if __name__ == "__main__":
    main()
