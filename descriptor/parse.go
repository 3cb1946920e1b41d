package descriptor

import "strings"

// node is one element of a descriptor's expression tree: either a script
// expression NAME(ARG,…) or a leaf argument (a number or a key expression).
// Offsets are 0-based byte offsets into the descriptor string.
type node struct {
	name string  // function name; "" for a leaf
	text string  // leaf text
	pos  int     // offset of the first character
	args []*node // arguments of a function
}

const maxDepth = 8 // deepest nesting any supported or planned descriptor needs is 3

// parseTree parses s (a descriptor without checksum) into an expression tree.
// It knows only the shape NAME(ARG,ARG,…); the meaning of names and leaves is
// checked by the builders in build.go.
func parseTree(s string) (*node, error) {
	n, end, err := parseNode(s, 0, 0)
	if err != nil {
		return nil, err
	}
	if end != len(s) {
		return nil, errAt(end, ErrSyntax, "unexpected %s after the end of the expression", quoteChar(s, end))
	}
	return n, nil
}

func parseNode(s string, pos, depth int) (*node, int, error) {
	if depth > maxDepth {
		return nil, 0, errAt(pos, ErrSyntax, "expressions nested too deeply")
	}
	j := pos
	for j < len(s) && !strings.ContainsRune(",()", rune(s[j])) {
		j++
	}
	if j == pos {
		if j == len(s) {
			return nil, 0, errAt(j, ErrSyntax, "unexpected end of descriptor: expected an expression")
		}
		return nil, 0, errAt(j, ErrSyntax, "expected an expression before %s", quoteChar(s, j))
	}
	if j == len(s) || s[j] != '(' {
		return &node{text: s[pos:j], pos: pos}, j, nil
	}
	name := s[pos:j]
	if !isIdentifier(name) {
		return nil, 0, errAt(pos, ErrSyntax, "%q is not a script expression name", name)
	}
	n := &node{name: name, pos: pos}
	j++ // '('
	for {
		arg, end, err := parseNode(s, j, depth+1)
		if err != nil {
			return nil, 0, err
		}
		n.args = append(n.args, arg)
		if end == len(s) {
			return nil, 0, errAt(end, ErrSyntax, "missing ')' to close %s( opened at column %d", name, pos+len(name)+1)
		}
		switch s[end] {
		case ',':
			j = end + 1
		case ')':
			return n, end + 1, nil
		default: // '('
			return nil, 0, errAt(end, ErrSyntax, "unexpected '('")
		}
	}
}

func isIdentifier(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}
