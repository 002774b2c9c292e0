from finebert.cli import main

main()
