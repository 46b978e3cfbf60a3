#!/bin/sh
# Test fixture: a committed script the corpus buildspecs run.
echo "configure $*"
