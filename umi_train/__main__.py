"""`python -m umi_train ...` == `umitrain ...` (handy under `accelerate launch -m umi_train`)."""

from umi_train.cli import main

main()
