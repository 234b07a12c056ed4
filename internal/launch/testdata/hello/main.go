// Command hello is what the launch tests compile: it prints one JSON line naming
// itself.
package main

import "fmt"

func main() { fmt.Println(`{"msg":"hello"}`) }
