from dind.main import main

main()
