#!/usr/bin/env python
"""Entry script, like RecStudio's run.py: python run_recstudio.py -m SASRec -d embedded --augment rsir"""
import sys

from recstudio_rsir.cli import main

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
