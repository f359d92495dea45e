from umi_eval.cli.commands import main

main()
