#!/bin/sh
set -e
case "${1:-}" in
  gateway|tokenizer|generation|reward|session)
    service="$1"; shift
    exec python -m "chatstack.${service}" "$@" ;;
  chatstack)
    shift; exec chatstack "$@" ;;
  ""|-h|--help)
    echo "usage: <image> {gateway|tokenizer|generation|reward|session} [flags] | <image> chatstack [args]"
    exit 0 ;;
  *)
    exec "$@" ;;
esac
