package nar

import (
	"io/fs"
	"os"
)

// portableDumper walks a tree with the os package only: one Lstat per
// object, as Nix does. It is the walker where no faster one exists, and the
// tests run it on every platform against nix-store --dump so that it cannot
// rot where the fast one is used.
type portableDumper struct {
	w    *Writer
	root string
	hdr  Header
}

func (d *portableDumper) dumpRoot(narPath string) error { return d.object(d.root, narPath, "") }

func (d *portableDumper) release() {}

func (d *portableDumper) object(fsPath, narPath, rel string) error {
	fi, err := os.Lstat(fsPath)
	if err != nil {
		return dumpErr(d.root, rel, "lstat", err)
	}
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		f, err := os.Open(fsPath)
		if err != nil {
			return dumpErr(d.root, rel, "open", err)
		}
		defer f.Close()
		d.hdr = Header{Path: narPath, Type: TypeRegular, Executable: mode&0o100 != 0, Size: fi.Size()}
		if err := d.w.WriteHeader(&d.hdr); err != nil {
			return err
		}
		if _, err := d.w.readContents(f); err != nil {
			if d.w.err != nil {
				return d.w.err
			}
			return dumpErr(d.root, rel, "read", err)
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(fsPath)
		if err != nil {
			return dumpErr(d.root, rel, "readlink", err)
		}
		d.hdr = Header{Path: narPath, Type: TypeSymlink, LinkTarget: target}
		return d.w.WriteHeader(&d.hdr)
	case mode.IsDir():
		f, err := os.Open(fsPath)
		if err != nil {
			return dumpErr(d.root, rel, "open", err)
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return dumpErr(d.root, rel, "readdir", err)
		}
		ents := make([]dirEntry, len(names))
		for i, n := range names {
			ents[i].name = n
		}
		if err := d.w.sortEntries(ents, d.root, rel); err != nil {
			return err
		}
		d.hdr = Header{Path: narPath, Type: TypeDirectory}
		if err := d.w.WriteHeader(&d.hdr); err != nil {
			return err
		}
		for _, e := range ents {
			name := e.name
			childNar, childRel := e.narName, name
			if narPath != "" {
				childNar = narPath + "/" + e.narName
			}
			if rel != "" {
				childRel = rel + "/" + name
			}
			if err := d.object(fsPath+"/"+name, childNar, childRel); err != nil {
				return err
			}
		}
		return nil
	}
	return dumpErr(d.root, rel, "file type", ErrUnsupported)
}
