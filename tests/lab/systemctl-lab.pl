#!/usr/bin/perl
# aegir lab: `systemctl show` / `systemctl is-active` for a Debian root where
# systemd is installed but not running (a lab host; see tests/lab/debian_root.py).
# Installed as /usr/local/sbin/systemctl, ahead of /usr/bin/systemctl in PATH;
# every other verb goes to the real systemctl (which works offline for
# enable/disable/is-enabled/cat, and says "not booted with systemd" otherwise).
#
# Where the answers come from, so that they are true rather than made up:
# - a unit's configuration (FragmentPath, DropInPaths, Requires, BindsTo, After,
#   aliases, ExecStart...) is what systemd's own unit loader computes, offline:
#   `systemd --test --system --unit=UNIT` (run as nobody, as systemd demands)
#   dumps every unit it loads, default and implicit dependencies included;
# - a service's ActiveState is "active" when a process of this host runs its
#   ExecStart program (this host: processes whose root is our root), and
#   MainPID is that process. systemd is not running, so nothing else is active:
#   sockets, targets and oneshot services say "inactive".
# Only perl-base (Essential in every Debian root) is used.
use strict;
use warnings;
use Cwd qw(abs_path);

my @argv = @ARGV;
my ($verb, @props, @units, $value_only);
while (@argv) {
    my $a = shift @argv;
    if ($a eq '-p' || $a eq '--property') { push @props, split /,/, (shift(@argv) // '') }
    elsif ($a =~ /^--property=(.*)$/)   { push @props, split /,/, $1 }
    elsif ($a =~ /^-p(.+)$/)            { push @props, split /,/, $1 }
    elsif ($a eq '--value')             { $value_only = 1 }
    elsif ($a =~ /^-/)                  { }
    elsif (!defined $verb)              { $verb = $a }
    else                                { push @units, $a }
}
if (!defined $verb || ($verb ne 'show' && $verb ne 'is-active') || !@units) {
    exec '/usr/bin/systemctl', @ARGV or die "systemctl-lab: cannot run /usr/bin/systemctl: $!\n";
}

my @DEPS = qw(Requires Requisite Wants BindsTo PartOf Upholds Conflicts Before After RequiredBy
              RequisiteOf WantedBy BoundBy ConsistsOf UpheldBy ConflictedBy TriggeredBy Triggers
              OnFailure PropagatesReloadTo ReloadPropagatedFrom JoinsNamespaceOf);
my @DEFAULT = (qw(Id Names Description LoadState ActiveState SubState MainPID Type FragmentPath
                  DropInPaths ExecStart), @DEPS);

sub full_name { my ($u) = @_; return $u =~ /\.[a-z]+$/ ? $u : "$u.service" }

# systemd's own view of one unit: the block for it in `systemd --test` output.
# (As nobody, it needs /run/systemd to exist; without /run/systemd/system in
# it, nothing takes this host for a booted systemd, deb-systemd-invoke included.)
sub load_unit {
    mkdir '/run/systemd', 0755 unless -d '/run/systemd';
    my ($name) = @_;
    my $pid = open(my $fh, '-|');
    die "systemctl-lab: fork: $!\n" unless defined $pid;
    if (!$pid) {
        open STDERR, '>', '/dev/null';
        exec 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
             '/lib/systemd/systemd', '--test', '--system', '--no-pager', "--unit=$name";
        exit 127;
    }
    my ($u, $sub);
    while (my $line = <$fh>) {
        chomp $line;
        if ($line =~ /^\t-> Unit (\S+):$/) {
            last if $u && grep { $_ eq $name } @{$u->{Names}};
            $u = { Id => $1, Names => [$1], deps => {} };
            $sub = '';
            next;
        }
        next unless $u;
        if ($line =~ /^\t\t-> (\S+):$/) { $sub = $1; next }
        if ($line =~ /^\t\t\tCommand Line: (.*)$/) { $u->{ExecStart} //= $1 if $sub eq 'ExecStart'; next }
        next unless $line =~ /^\t\t(\S[^:]*): ?(.*)$/;
        my ($k, $v) = ($1, $2);
        $sub = '';
        if ($k eq 'Alias') { push @{$u->{Names}}, $v }
        elsif ($k eq 'Description') { $u->{Description} = $v }
        elsif ($k eq 'Unit Load State') { $u->{LoadState} = $v }
        elsif ($k eq 'Fragment Path') { $u->{FragmentPath} = $v }
        elsif ($k eq 'DropIn Path') { push @{$u->{DropInPaths}}, $v }
        elsif ($k eq 'Type') { $u->{Type} = $v }
        elsif (grep { $_ eq $k } @DEPS) { my ($dep) = split / /, $v; push @{$u->{deps}{$k}}, $dep }
    }
    close $fh;
    return undef unless $u && grep { $_ eq $name } @{$u->{Names}};
    return $u;
}

# This host's processes: pid, exe, argv[0], argv[1], ppid.
my @procs;
sub host_procs {
    return @procs if @procs;
    my @root = stat '/';
    opendir(my $d, '/proc') or return ();
    for my $pid (grep { /^\d+$/ } readdir $d) {
        my @st = stat "/proc/$pid/root/";
        next unless @st && $st[0] == $root[0] && $st[1] == $root[1];
        my $exe = readlink("/proc/$pid/exe") // '';
        $exe =~ s/ \(deleted\)$//;
        open(my $c, '<', "/proc/$pid/cmdline") or next;
        my $cmdline = do { local $/; <$c> } // '';
        my @a = split /\0/, $cmdline;
        open(my $s, '<', "/proc/$pid/stat") or next;
        my $stat = <$s> // '';
        my ($ppid) = $stat =~ /\) \S+ (\d+)/;
        push @procs, [$pid, $exe, $a[0] // '', $a[1] // '', $ppid // 0];
    }
    return @procs;
}

sub activity {
    my ($u) = @_;
    return ('inactive', 'dead', 0) unless ($u->{LoadState} // '') eq 'loaded' && $u->{Id} =~ /\.service$/;
    my ($prog) = split ' ', ($u->{ExecStart} // '');
    return ('inactive', 'dead', 0) unless $prog;
    $prog =~ s/^[-@:+!]+//;
    my $real = abs_path($prog) // $prog;
    my @hits = grep { $_->[1] eq $real || $_->[2] eq $prog || $_->[3] eq $prog } host_procs();
    return ('inactive', 'dead', 0) unless @hits;
    my %hit = map { $_->[0] => 1 } @hits;
    my ($main) = sort { $a->[0] <=> $b->[0] } grep { !$hit{$_->[4]} } @hits;
    return ('active', 'running', ($main // $hits[0])->[0]);
}

my ($first, $all_active) = (1, 1);
for my $unit (map { full_name($_) } @units) {
    my $u = load_unit($unit) // { Id => $unit, Names => [$unit], LoadState => 'not-found', deps => {} };
    my ($active, $sub, $mainpid) = activity($u);
    $all_active = 0 unless $active eq 'active';
    if ($verb eq 'is-active') { print "$active\n"; next }
    my %v = (
        Id => $u->{Id}, Names => join(' ', @{$u->{Names}}), Description => $u->{Description} // $u->{Id},
        LoadState => $u->{LoadState} // 'error', ActiveState => $active, SubState => $sub, MainPID => $mainpid,
        Type => $u->{Type} // '', FragmentPath => $u->{FragmentPath} // '',
        DropInPaths => join(' ', @{$u->{DropInPaths} // []}),
        ExecStart => defined $u->{ExecStart} ? "{ path=" . (split ' ', $u->{ExecStart})[0] . " ; argv[]=$u->{ExecStart} }" : '',
        map { $_ => join(' ', @{$u->{deps}{$_} // []}) } @DEPS,
    );
    print "\n" unless $first;
    $first = 0;
    for my $p (@props ? @props : @DEFAULT) {
        next unless exists $v{$p};
        next if !@props && $v{$p} eq '';
        print $value_only ? "$v{$p}\n" : "$p=$v{$p}\n";
    }
}
exit($verb eq 'is-active' && !$all_active ? 3 : 0);
