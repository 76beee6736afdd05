from handoff_worker.cli import main

main()
