from umi_eval.cli import main

main()
