#!/usr/bin/env bash
# A study that outlasts a session: studies/cpu_study.sh run in a checkout of its own outside the
# work tree, so that its results/ survive the work tree being laid anew, and a run cut at the
# end of a session resumes from its committed chunks in the next one.
#   studies/study_checkout.sh CONFIG STUDY_DIR
# The checkout is cloned once from this repository's HEAD into $STUDY_HOME/<name> (default
# ~/.cache/entropy-sentinel/studies); later calls reuse it as it is, so one commit makes the
# whole study (provenance records it). The export is copied back into this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$1
STUDY_DIR=$2
NAME=$(basename "$STUDY_DIR")
HOME_DIR="${STUDY_HOME:-$HOME/.cache/entropy-sentinel/studies}/$NAME"
if [[ ! -d "$HOME_DIR/main/.git" ]]; then
  mkdir -p "$HOME_DIR"
  git clone -q . "$HOME_DIR/main"
fi
ln -sfn "$(realpath ../shared)" "$HOME_DIR/shared" # the configs read ../shared/benchmarks
echo "study $NAME: $HOME_DIR/main at $(git -C "$HOME_DIR/main" rev-parse --short HEAD)"
DRIVER=studies/cpu_study.sh
[[ -x "$HOME_DIR/main/$DRIVER" ]] || DRIVER=bench/cpu_study.sh # a checkout from before studies/
(cd "$HOME_DIR/main" && make -s .venv/.installed && README= "$DRIVER" "$CONFIG" "$STUDY_DIR")
rm -rf "$STUDY_DIR"
mkdir -p "$(dirname "$STUDY_DIR")"
cp -r "$HOME_DIR/main/$STUDY_DIR" "$STUDY_DIR"
