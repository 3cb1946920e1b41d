package descriptor

import "strings"

// node is one element of a descriptor's expression tree: a script
// expression NAME(ARG,…), a taproot tree branch {LEFT,RIGHT} (name "{}",
// BIP-386), or a leaf argument (a number or a key expression).
// Offsets are 0-based byte offsets into the descriptor string.
type node struct {
	name string  // function name; "" for a leaf
	text string  // leaf text
	pos  int     // offset of the first character
	args []*node // arguments of a function
}

// maxDepth bounds nesting: sh(wsh(multi())) needs 3; a tr() tree adds one
// level per tree depth. BIP-341 allows trees 128 deep, far beyond what a
// multisig wallet uses; deeper trees are refused as syntax errors here.
const maxDepth = 40

// braceName is the node name of a taproot tree branch {LEFT,RIGHT}.
const braceName = "{}"

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
	if pos < len(s) && s[pos] == '{' {
		return parseBrace(s, pos, depth)
	}
	j := pos
	for j < len(s) && !strings.ContainsRune(",(){}", rune(s[j])) {
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
		default: // '(', '{' or '}'
			return nil, 0, errAt(end, ErrSyntax, "unexpected %s", quoteChar(s, end))
		}
	}
}

// parseBrace parses a taproot tree branch "{TREE,TREE}" at s[pos] == '{'
// (BIP-386 "tr(KEY,TREE)").
func parseBrace(s string, pos, depth int) (*node, int, error) {
	n := &node{name: braceName, pos: pos}
	j := pos + 1
	for {
		arg, end, err := parseNode(s, j, depth+1)
		if err != nil {
			return nil, 0, err
		}
		n.args = append(n.args, arg)
		if end == len(s) {
			return nil, 0, errAt(end, ErrSyntax, "missing '}' to close the tree branch opened at column %d", pos+1)
		}
		switch s[end] {
		case ',':
			if len(n.args) == 2 {
				return nil, 0, errAt(end, ErrSyntax, "a tree branch {…} holds exactly two subtrees")
			}
			j = end + 1
		case '}':
			if len(n.args) != 2 {
				return nil, 0, errAt(end, ErrSyntax, "a tree branch {…} holds exactly two subtrees")
			}
			return n, end + 1, nil
		default:
			return nil, 0, errAt(end, ErrSyntax, "unexpected %s in a tree branch", quoteChar(s, end))
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
