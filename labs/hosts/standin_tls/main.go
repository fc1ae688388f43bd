// Command standin-tls is the TLS side of the host lab's stand-in Harbor proxy (labs/hosts/standin_installer.py):
// what Harbor's nginx does on its https port, terminate TLS with harbor.yml's https certificate and key, for a
// proxy container that otherwise speaks plain HTTP (busybox has no TLS server). Not Harbor's nginx.
//
//	standin-tls LISTEN CERT KEY BACKEND    e.g. standin-tls :8443 /etc/cert/server.crt /etc/cert/server.key 127.0.0.1:8080
//
// Each TLS connection is forwarded byte for byte to BACKEND (one plain TCP connection per client connection).
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: standin-tls LISTEN CERT KEY BACKEND")
		os.Exit(2)
	}
	listen, certFile, keyFile, backend := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "standin-tls: %v\n", err)
		os.Exit(1)
	}
	config := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	ln, err := tls.Listen("tcp", listen, config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "standin-tls: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "standin-tls: %s (TLS) -> %s\n", listen, backend)
	go reap()
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "standin-tls: accept: %v\n", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go forward(conn.(*tls.Conn), backend)
	}
}

// forward completes the handshake, then copies both ways until the backend has answered and closed.
func forward(client *tls.Conn, backend string) {
	defer client.Close()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if err := client.Handshake(); err != nil {
		return // a client that does not trust the certificate, or a port probe
	}
	_ = client.SetDeadline(time.Time{})
	server, err := net.DialTimeout("tcp", backend, 5*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "standin-tls: backend %s: %v\n", backend, err)
		return
	}
	defer server.Close()
	go func() {
		_, _ = io.Copy(server, client)
		_ = server.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(client, server)
}

// reap waits for every child that exits. standin-tls is PID 1 of the proxy container (the shell execs it after starting
// the plain listeners), so the handlers' orphaned processes become its children; unreaped, a long lab run piled up
// thousands of zombies against the machine's pid_max (32768 here).
func reap() {
	exited := make(chan os.Signal, 1)
	signal.Notify(exited, syscall.SIGCHLD)
	for range exited {
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
