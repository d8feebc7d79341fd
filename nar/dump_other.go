//go:build !linux

package nar

import (
	"io/fs"
	"os"
	"slices"
)

// dumper is the portable implementation: one Lstat per object, as Nix.
type dumper struct {
	w    *Writer
	root string
	hdr  Header
}

func (d *dumper) dumpRoot(narPath string) error { return d.object(d.root, narPath, "") }

func (d *dumper) object(fsPath, narPath, rel string) error {
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
		slices.Sort(names)
		d.hdr = Header{Path: narPath, Type: TypeDirectory}
		if err := d.w.WriteHeader(&d.hdr); err != nil {
			return err
		}
		for _, name := range names {
			childNar, childRel := name, name
			if narPath != "" {
				childNar = narPath + "/" + name
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
