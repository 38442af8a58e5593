package gatewaytest

import "sync"

// Hammer calls f from n goroutines, each in a loop, until f returns false
// or stop is called; f is given the number of its goroutine, 0 to n-1.
// stop ends the loops and waits for every goroutine to return; it may be
// called more than once, so a test can both call it and register it with
// t.Cleanup. Tests use it to use a value under -race while something
// changes it.
func Hammer(n int, f func(g int) bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if !f(g) {
					return
				}
			}
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
