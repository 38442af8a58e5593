package proxy

// MaxIDLength is the longest customer id the gateway accepts.
const MaxIDLength = 128

// ValidID reports whether id may be sent upstream: 1 to 128 characters of
// the URL's unreserved set (A-Z a-z 0-9 . _ ~ -), and not "." or "..",
// which a URL resolver would read as path steps.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLength || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '~', c == '-':
		default:
			return false
		}
	}
	return true
}
