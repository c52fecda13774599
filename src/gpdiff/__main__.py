from gpdiff.cli import main

main()
