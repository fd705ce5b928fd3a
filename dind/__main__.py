from dind.entry import main

main()
